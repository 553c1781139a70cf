//go:build !cgo

package cuda

func blasOpen(path string) error {
	return errorString("this gotune binary was built without cgo, so it cannot load " + path)
}
func blasCreate(ctx, stream uintptr) (uintptr, int) { return 0, 999 }
func blasDestroy(ctx, h uintptr) int                { return 999 }
func blasSgemm(ctx, h uintptr, ta, tb, m, n, k int, alpha float32, a DevicePtr, lda int, b DevicePtr, ldb int, beta float32, c DevicePtr, ldc int) int {
	return 999
}
func blasGemmEx(ctx, h uintptr, ta, tb, m, n, k int, alpha float32, a DevicePtr, at, lda int, b DevicePtr, bt, ldb int, beta float32, c DevicePtr, ct, ldc int) int {
	return 999
}
