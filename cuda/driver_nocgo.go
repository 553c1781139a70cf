//go:build !cgo

package cuda

import "unsafe"

// This file stands in for driver_cgo.go when cgo is disabled (no C
// compiler, or CGO_ENABLED=0): the package still builds, and every entry
// point reports that the driver cannot be loaded, so such a binary runs on
// the CPU backend.

const ctxFailFlag = 1 << 20

const cgoEnabled = false

// errCodeNoCgo is returned by every stub; it is never reached in practice
// because drvOpen fails first and the library is never marked loaded.
const errCodeNoCgo CUresult = 999

func drvOpen(path string) error {
	return errorString("this gotune binary was built without cgo (CGO_ENABLED=0), so it cannot load " + path)
}
func drvInit() CUresult                                          { return errCodeNoCgo }
func drvDriverVersion() (int, CUresult)                          { return 0, errCodeNoCgo }
func drvErrorName(CUresult) (string, bool)                       { return "", false }
func drvErrorString(CUresult) (string, bool)                     { return "", false }
func drvDeviceCount() (int, CUresult)                            { return 0, errCodeNoCgo }
func drvDeviceGet(int) (int, CUresult)                           { return 0, errCodeNoCgo }
func drvDeviceName(int) (string, CUresult)                       { return "", errCodeNoCgo }
func drvDeviceAttr(int, int) (int, CUresult)                     { return 0, errCodeNoCgo }
func drvDeviceTotalMem(int) (uint64, CUresult)                   { return 0, errCodeNoCgo }
func drvPrimaryCtxRetain(int) (uintptr, CUresult)                { return 0, errCodeNoCgo }
func drvPrimaryCtxRelease(int) CUresult                          { return errCodeNoCgo }
func drvCtxSynchronize(uintptr) CUresult                         { return errCodeNoCgo }
func drvMemGetInfo(uintptr) (uint64, uint64, CUresult)           { return 0, 0, errCodeNoCgo }
func drvMemAlloc(uintptr, uint64) (DevicePtr, CUresult)          { return 0, errCodeNoCgo }
func drvMemFree(uintptr, DevicePtr) CUresult                     { return errCodeNoCgo }
func drvMemAllocHost(uintptr, uint64) (unsafe.Pointer, CUresult) { return nil, errCodeNoCgo }
func drvMemFreeHost(uintptr, unsafe.Pointer) CUresult            { return errCodeNoCgo }
func drvMemset(uintptr, int, DevicePtr, uint32, uint64, uintptr, bool) CUresult {
	return errCodeNoCgo
}
func drvMemcpyHtoD(uintptr, DevicePtr, unsafe.Pointer, uint64, uintptr, bool) CUresult {
	return errCodeNoCgo
}
func drvMemcpyDtoH(uintptr, unsafe.Pointer, DevicePtr, uint64, uintptr, bool) CUresult {
	return errCodeNoCgo
}
func drvMemcpyDtoD(uintptr, DevicePtr, DevicePtr, uint64, uintptr, bool) CUresult {
	return errCodeNoCgo
}
func drvStreamCreate(uintptr) (uintptr, CUresult)                   { return 0, errCodeNoCgo }
func drvStreamSynchronize(uintptr, uintptr) CUresult                { return errCodeNoCgo }
func drvStreamDestroy(uintptr, uintptr) CUresult                    { return errCodeNoCgo }
func drvStreamWaitEvent(uintptr, uintptr, uintptr) CUresult         { return errCodeNoCgo }
func drvEventCreate(uintptr) (uintptr, CUresult)                    { return 0, errCodeNoCgo }
func drvEventRecord(uintptr, uintptr, uintptr) CUresult             { return errCodeNoCgo }
func drvEventSynchronize(uintptr, uintptr) CUresult                 { return errCodeNoCgo }
func drvEventElapsed(uintptr, uintptr, uintptr) (float32, CUresult) { return 0, errCodeNoCgo }
func drvEventDestroy(uintptr, uintptr) CUresult                     { return errCodeNoCgo }
func drvModuleLoad(uintptr, []byte) (uintptr, CUresult)             { return 0, errCodeNoCgo }
func drvModuleUnload(uintptr, uintptr) CUresult                     { return errCodeNoCgo }
func drvModuleGetFunction(uintptr, uintptr, string) (uintptr, CUresult) {
	return 0, errCodeNoCgo
}
func drvFuncGetAttr(uintptr, uintptr, int) (int, CUresult) { return 0, errCodeNoCgo }
func drvFuncSetAttr(uintptr, uintptr, int, int) CUresult   { return errCodeNoCgo }
func drvLaunch(uintptr, uintptr, [3]uint32, [3]uint32, uint32, uintptr, []byte, []int32) CUresult {
	return errCodeNoCgo
}
