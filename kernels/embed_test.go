package kernels

import (
	"encoding/binary"
	"os"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

// TestFatbinMatchesSources is the CI check that the committed fatbin was
// built from the committed kernel sources.
func TestFatbinMatchesSources(t *testing.T) {
	got, err := SourcesHash(os.DirFS("."), ".")
	if err != nil {
		t.Fatal(err)
	}
	if got != SourceHash {
		t.Fatalf("kernel sources changed; run make kernels and commit the fatbin\n"+
			"  sources hash now:        %s\n  recorded (sources.sha256): %s", got, SourceHash)
	}
}

func TestFatbinIsAFatbin(t *testing.T) {
	if !Available() {
		t.Fatal("gotune.fatbin is empty; run make kernels and commit the fatbin")
	}
	if len(Fatbin) < 16 {
		t.Fatalf("gotune.fatbin has %d bytes, too short for a fatbin header", len(Fatbin))
	}
	if m := binary.LittleEndian.Uint32(Fatbin); m != FatbinMagic {
		t.Fatalf("gotune.fatbin starts with %#x, want the fatbin magic %#x", m, FatbinMagic)
	}
}

// TestSourcesHashMatchesSha256sum checks the hash scheme against values
// computed independently with coreutils:
//
//	printf 'a\n' > a.cu; printf 'bb' > kernels.def; printf '' > z.cuh
//	LC_ALL=C sha256sum a.cu kernels.def z.cuh | sha256sum
func TestSourcesHashMatchesSha256sum(t *testing.T) {
	fsys := fstest.MapFS{
		"a.cu":        {Data: []byte("a\n")},
		"kernels.def": {Data: []byte("bb")},
		"z.cuh":       {Data: []byte("")},
		"notes.txt":   {Data: []byte("not a source")},
		"embed.go":    {Data: []byte("package kernels")},
	}
	got, err := SourcesHash(fsys, ".")
	if err != nil {
		t.Fatal(err)
	}
	const want = "e984af942497e90bb4718aac6007b465217a01b35a722df7f36cfb061f813ed6"
	if got != want {
		t.Fatalf("SourcesHash = %s, want %s (sha256sum listing scheme)", got, want)
	}
}

func TestSourcesHashChangesWithAnySource(t *testing.T) {
	base := fstest.MapFS{
		"a.cu":        {Data: []byte("kernel")},
		"b.cuh":       {Data: []byte("header")},
		"kernels.def": {Data: []byte("list")},
	}
	h0, err := SourcesHash(base, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.cu", "b.cuh", "kernels.def"} {
		t.Run(name, func(t *testing.T) {
			changed := fstest.MapFS{}
			for k, v := range base {
				changed[k] = &fstest.MapFile{Data: v.Data}
			}
			changed[name] = &fstest.MapFile{Data: append([]byte(nil), append(base[name].Data, '!')...)}
			h1, err := SourcesHash(changed, ".")
			if err != nil {
				t.Fatal(err)
			}
			if h1 == h0 {
				t.Fatalf("editing %s left the hash unchanged", name)
			}
		})
	}
	if _, err := SourcesHash(fstest.MapFS{"x.txt": {Data: []byte("x")}}, "."); err == nil {
		t.Fatal("SourcesHash of a directory without sources succeeded")
	}
}

// TestKernelListIsWellFormed parses kernels.def the way the Go side may:
// every kernel line names a gt_ kernel, a known launch rule and a
// parameter list of the documented types.
func TestKernelListIsWellFormed(t *testing.T) {
	data, err := os.ReadFile("kernels.def")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`^GT_KERNEL\((gt_\w+), (\w+), \((.*)\)\)$`)
	param := regexp.MustCompile(`^((const )?(void|float|int)(\*)?|unsigned long long) \w+$`)
	rules := map[string]bool{"EW": true, "EW2D": true, "ROW": true, "COLS32": true, "GEMM_F32": true, "GEMM_BF16": true, "ATTN_FWD": true, "ATTN_DQ": true, "ATTN_DKV": true, "ATTN_TC_FWD": true, "ATTN_TC_DQ": true, "ATTN_TC_DKV": true, "WARP_ROWS": true}
	seen := map[string]bool{}
	for i, l := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(l, "GT_KERNEL(") {
			continue
		}
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("kernels.def:%d: malformed kernel line %q", i+1, l)
			continue
		}
		if seen[m[1]] {
			t.Errorf("kernels.def:%d: kernel %s listed twice", i+1, m[1])
		}
		seen[m[1]] = true
		if !rules[m[2]] {
			t.Errorf("kernels.def:%d: %s has unknown launch rule %s", i+1, m[1], m[2])
		}
		for _, p := range strings.Split(m[3], ", ") {
			if !param.MatchString(p) || strings.HasPrefix(p, "const ") && !strings.Contains(p, "*") {
				t.Errorf("kernels.def:%d: %s: parameter %q is not one of the documented types", i+1, m[1], p)
			}
		}
	}
	if len(seen) < 10 {
		t.Fatalf("kernels.def lists %d kernels; parsing is broken", len(seen))
	}
}
