//go:build !cgo

package cuda

// Stand-ins for nccl_cgo.go when cgo is disabled: NCCL cannot be loaded,
// so such a binary trains in one process only.

func ncclOpen(path string) error {
	return errorString("this gotune binary was built without cgo (CGO_ENABLED=0), so it cannot load " + path)
}
func ncclUniqueIDRaw(*[ncclUniqueIDBytes]byte) ncclResult { return 3 }
func ncclInitRank(uintptr, int, *[ncclUniqueIDBytes]byte, int) (uintptr, ncclResult) {
	return 0, 3
}
func ncclAllReduceRaw(uintptr, DevicePtr, DevicePtr, uint64, int, int, uintptr, uintptr) ncclResult {
	return 3
}
func ncclReduceScatterRaw(uintptr, DevicePtr, DevicePtr, uint64, int, int, uintptr, uintptr) ncclResult {
	return 3
}
func ncclAllGatherRaw(uintptr, DevicePtr, DevicePtr, uint64, int, uintptr, uintptr) ncclResult {
	return 3
}
func ncclBroadcastRaw(uintptr, DevicePtr, DevicePtr, uint64, int, int, uintptr, uintptr) ncclResult {
	return 3
}
func ncclDestroyRaw(uintptr, uintptr) ncclResult         { return 3 }
func ncclAbortRaw(uintptr, uintptr) ncclResult           { return 3 }
func ncclAsyncErrorRaw(uintptr) (ncclResult, ncclResult) { return 0, 3 }
func ncclErrorStringRaw(ncclResult) string               { return "NCCL unavailable without cgo" }
func ncclLastErrorRaw(uintptr) string                    { return "" }
