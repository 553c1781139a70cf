// dlopen.h: loading a shared library at run time and resolving its
// symbols, for the cgo bindings of the driver, NCCL and cuBLAS. A failure
// leaves one message in the caller's err buffer, which Go reports.
#ifndef GOTUNE_CUDA_DLOPEN_H
#define GOTUNE_CUDA_DLOPEN_H

#include <dlfcn.h>
#include <string.h>

// gt_set_err copies msg into err (errlen bytes, always terminated).
static void gt_set_err(char *err, int errlen, const char *msg) {
	strncpy(err, msg, errlen - 1);
	err[errlen - 1] = 0;
}

// gt_dlopen opens path, or returns NULL with dlerror's message in err.
static void *gt_dlopen(const char *path, char *err, int errlen) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *m = dlerror();
		gt_set_err(err, errlen, m ? m : "dlopen failed");
	}
	return h;
}

// GT_DLSYM stores the symbol sym of handle h into ptr, or makes the
// enclosing function return 1 with "missing symbol <sym>" in err.
#define GT_DLSYM(h, ptr, sym, err, errlen) \
	do { \
		*(void **)(&(ptr)) = dlsym((h), (sym)); \
		if (!(ptr)) { \
			gt_set_err((err), (errlen), "missing symbol " sym); \
			return 1; \
		} \
	} while (0)

#endif
