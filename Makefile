# gotune — common tasks. `make help` lists them.
GO        ?= go
BIN       ?= bin/gotune
EMU_LIB   := kernels/emu/build/libcuda.so

.PHONY: help build gpu-binaries test test-short fuzz vet demo emu emu-test kernels bench golden clean check-gguf

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

build: ## build the gotune binary into bin/
	$(GO) build -o $(BIN) ./cmd/gotune

gpu-binaries: ## build the Go binaries scripts/gpu-check.sh runs on a GPU machine (which has no Go)
	mkdir -p build/gpu
	$(GO) test -c -ldflags='-s -w' -o build/gpu/cuda.test ./cuda
	$(GO) build -ldflags='-s -w' -o build/gpu/gotune ./cmd/gotune

vet: ## go vet every package, and fail on unformatted Go files
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

emu: ## build the CPU emulator of the CUDA driver (fake libcuda.so) with g++
	$(MAKE) -C kernels emu

emu-test: ## run every kernel through the emulator against a C++ float64 reference
	$(MAKE) -C kernels emu-test

kernels: ## rebuild the embedded CUDA fatbin (needs CUDA 11.8: scripts/install-cuda-toolkit.sh)
	$(MAKE) -C kernels kernels

test: emu vet ## the full test suite (CPU only; GPU kernels run through the emulator)
	GOTUNE_LIBCUDA=$(CURDIR)/$(EMU_LIB) GOTUNE_REQUIRE_EMU=1 $(GO) test -count=1 -timeout 30m ./...

fuzz: ## run every fuzz target briefly (FUZZTIME each, default 100x = 100 inputs; crashers land in testdata/fuzz/)
	scripts/fuzz.sh

test-short: ## quick tests without the emulator
	$(GO) test -short ./...

demo: build ## fine-tune the built-in model (testdata/demo) on a task it has not seen (CPU, 1-2 min)
	$(BIN) demo

check-gguf: ## run gotune's GGUF exports in llama.cpp (npm node-llama-cpp, installed into .cache/) and compare greedy output with gotune
	scripts/check-gguf-llamacpp.sh

bench: build ## kernel and backend microbenchmarks (CPU here; GPU where present)
	$(BIN) bench kernels

golden: ## regenerate the PyTorch golden files (needs /usr/bin/python3 with torch)
	/usr/bin/python3 testdata/golden/gen.py
	/usr/bin/python3 testdata/golden/meta.py

clean: ## remove build outputs
	rm -rf bin kernels/emu/build
