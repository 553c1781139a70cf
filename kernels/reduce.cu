// reduce.cu: reductions, normalisations and the cross-entropy loss.
// Launch rules: ROW (one block of 256 threads per row, grid.x = rows),
// COLS32 (a block per 32 columns) and EW for gt_sum_squares. Every thread
// of a block reaches every block_sum/block_max (they hold barriers), so no
// thread returns early.
#include "common.cuh"

extern "C" __global__ void gt_sum_squares(float* dst, const void* x, int x_dt, int n) {
  float s = 0.f;
  GT_GRID_STRIDE(i, n) {
    float v = ldx(x, x_dt, i);
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) atomicAdd(dst, s);
}

// gt_sum_rows: threads (lane, group) sum column blockIdx.x*32+lane over
// rows group, group+8, ...; the eight partial sums are added in a fixed
// order, so the result is deterministic.
extern "C" __global__ void gt_sum_rows(void* dst, int dst_dt, const void* x, int x_dt, int rows, int cols) {
  __shared__ float part[8][33];
  int lane = threadIdx.x & 31, grp = threadIdx.x >> 5;
  long long col = (long long)blockIdx.x * 32 + lane;
  float s = 0.f;
  if (col < cols && grp < 8)
    for (long long r = grp; r < rows; r += 8) s += ldx(x, x_dt, r * cols + col);
  if (grp < 8) part[grp][lane] = s;
  __syncthreads();
  if (threadIdx.x < 32 && col < cols) {
    float t = 0.f;
    for (int g = 0; g < 8; g++) t += part[g][lane];
    stx(dst, dst_dt, col, ldx(dst, dst_dt, col) + t);
  }
}

extern "C" __global__ void gt_row_sum_squares(void* dst, int dst_dt, const void* x, int x_dt, int rows, int cols) {
  long long row = blockIdx.x;
  if (row >= rows) return;  // uniform across the block
  const long long base = row * cols;
  float s = 0.f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) {
    float v = ldx(x, x_dt, base + j);
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) stx(dst, dst_dt, row, s);
}

extern "C" __global__ void gt_rmsnorm(void* out, int out_dt, float* rstd, const void* x, int x_dt, const void* w,
                                      int w_dt, int rows, int cols, float eps) {
  long long row = blockIdx.x;
  if (row >= rows) return;
  const long long base = row * cols;
  float s = 0.f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) {
    float v = ldx(x, x_dt, base + j);
    s += v * v;
  }
  s = block_sum(s);
  float r = 1.f / sqrtf(s / (float)cols + eps);
  for (int j = threadIdx.x; j < cols; j += blockDim.x)
    stx(out, out_dt, base + j, ldx(x, x_dt, base + j) * r * ldx(w, w_dt, j));
  if (threadIdx.x == 0 && rstd) rstd[row] = r;
}

// norm_param_grads adds the weight (and bias) gradients of RMSNorm or
// LayerNorm: for each column j, dw_j += Σ_r g[r,j]·x̂[r,j] and
// db_j += Σ_r g[r,j], with x̂ = (x − mean[r])·rstd[r] (mean null: RMSNorm).
// Block b owns the 32-column chunks b, b+gridDim.x, ...: each column is
// summed by one block in float32, in a fixed order, and rounded into dw/db
// once, so a bfloat16 dw is as exact as the CPU backend's and no atomics
// are needed. Lanes read consecutive columns (coalesced), the block's 8
// warps split the rows.
__device__ __forceinline__ void norm_param_grads(void* dw, int dw_dt, void* db, int db_dt, const void* dout,
                                                 int dout_dt, const void* x, int x_dt, const float* mean,
                                                 const float* rstd, int rows, int cols) {
  __shared__ float pw[8][33], pb[8][33];
  const int lane = threadIdx.x & 31, grp = threadIdx.x >> 5;
  const int chunks = (cols + 31) / 32;
  for (int chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
    long long col = (long long)chunk * 32 + lane;
    float sw = 0.f, sb = 0.f;
    if (col < cols && grp < 8) {
      for (long long r = grp; r < rows; r += 8) {
        float g = ldx(dout, dout_dt, r * cols + col);
        float xh = (ldx(x, x_dt, r * cols + col) - (mean ? mean[r] : 0.f)) * rstd[r];
        sw += g * xh;
        sb += g;
      }
    }
    __syncthreads();  // the previous chunk's readers are done with pw/pb
    if (grp < 8) {
      pw[grp][lane] = sw;
      pb[grp][lane] = sb;
    }
    __syncthreads();
    if (threadIdx.x < 32 && col < cols) {
      float tw = 0.f, tb = 0.f;
      for (int g = 0; g < 8; g++) tw += pw[g][lane], tb += pb[g][lane];
      if (dw) stx(dw, dw_dt, col, ldx(dw, dw_dt, col) + tw);
      if (db) stx(db, db_dt, col, ldx(db, db_dt, col) + tb);
    }
  }
}

// y = x·r·w, r = (mean x² + eps)^-1/2:
//   dx_j += r·w_j·g_j − x_j·r³·(Σ_i g_i·w_i·x_i)/n,   dw_j += Σ_rows g_j·x_j·r.
// Block b computes row b of dx (launch rule ROW: grid.x = rows) and the
// column chunks of dw it owns (norm_param_grads).
extern "C" __global__ void gt_rmsnorm_backward(void* dx, int dx_dt, void* dw, int dw_dt, const void* dout,
                                               int dout_dt, const void* x, int x_dt, const void* w, int w_dt,
                                               const float* rstd, int rows, int cols) {
  long long row = blockIdx.x;
  if (dx && row < rows) {  // uniform across the block
    const long long base = row * cols;
    float r = rstd[row];
    float dot = 0.f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
      dot += ldx(dout, dout_dt, base + j) * ldx(w, w_dt, j) * ldx(x, x_dt, base + j);
    dot = block_sum(dot);
    float c = r * r * r * dot / (float)cols;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      float g = ldx(dout, dout_dt, base + j), xv = ldx(x, x_dt, base + j);
      stx(dx, dx_dt, base + j, ldx(dx, dx_dt, base + j) + r * ldx(w, w_dt, j) * g - xv * c);
    }
  }
  if (dw) norm_param_grads(dw, dw_dt, nullptr, 0, dout, dout_dt, x, x_dt, nullptr, rstd, rows, cols);
}
extern "C" __global__ void gt_layernorm(void* out, int out_dt, float* mean, float* rstd, const void* x, int x_dt,
                                        const void* w, int w_dt, const void* b, int b_dt, int rows, int cols,
                                        float eps) {
  long long row = blockIdx.x;
  if (row >= rows) return;
  const long long base = row * cols;
  float s = 0.f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) s += ldx(x, x_dt, base + j);
  float mu = block_sum(s) / (float)cols;
  float q = 0.f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) {
    float d = ldx(x, x_dt, base + j) - mu;
    q += d * d;
  }
  float r = 1.f / sqrtf(block_sum(q) / (float)cols + eps);
  for (int j = threadIdx.x; j < cols; j += blockDim.x) {
    float v = (ldx(x, x_dt, base + j) - mu) * r * ldx(w, w_dt, j);
    if (b) v += ldx(b, b_dt, j);
    stx(out, out_dt, base + j, v);
  }
  if (threadIdx.x == 0) {
    if (mean) mean[row] = mu;
    if (rstd) rstd[row] = r;
  }
}

// x̂ = (x−μ)·r, y = x̂·w + b, ĝ = g·w:
//   dx += r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)),  dw += Σ_rows g·x̂,  db += Σ_rows g.
// Same block roles as gt_rmsnorm_backward.
extern "C" __global__ void gt_layernorm_backward(void* dx, int dx_dt, void* dw, int dw_dt, void* db, int db_dt,
                                                 const void* dout, int dout_dt, const void* x, int x_dt,
                                                 const void* w, int w_dt, const float* mean, const float* rstd,
                                                 int rows, int cols) {
  long long row = blockIdx.x;
  if (dx && row < rows) {  // uniform across the block
    const long long base = row * cols;
    float mu = mean[row], r = rstd[row];
    float sa = 0.f, sc = 0.f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      float gh = ldx(dout, dout_dt, base + j) * ldx(w, w_dt, j);
      float xh = (ldx(x, x_dt, base + j) - mu) * r;
      sa += gh;
      sc += gh * xh;
    }
    float a = block_sum(sa) / (float)cols;
    float c = block_sum(sc) / (float)cols;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      float gh = ldx(dout, dout_dt, base + j) * ldx(w, w_dt, j);
      float xh = (ldx(x, x_dt, base + j) - mu) * r;
      stx(dx, dx_dt, base + j, ldx(dx, dx_dt, base + j) + r * (gh - a - xh * c));
    }
  }
  if (dw || db) norm_param_grads(dw, dw_dt, db, db_dt, dout, dout_dt, x, x_dt, mean, rstd, rows, cols);
}

// gt_cross_entropy: one block per row. Every read of the row happens
// before the barrier ahead of the first write, so dlogits may alias logits
// (each thread reads the logit it overwrites, for the soft cap's slope,
// before writing it).
extern "C" __global__ void gt_cross_entropy(float* losses, void* dlogits, int dlogits_dt, const void* logits,
                                            int logits_dt, const int* labels, int rows, int cols, float grad_scale,
                                            float soft_cap) {
  long long row = blockIdx.x;
  if (row >= rows) return;
  const long long base = row * cols;
  int label = labels[row];
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, ldx(logits, logits_dt, base + j));
  mx = block_max(mx);
  float s = 0.f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) s += expf(ldx(logits, logits_dt, base + j) - mx);
  s = block_sum(s);
  float lse = logf(s) + mx;
  bool ignored = label < 0;
  bool bad = label >= cols;  // out of range: a NaN loss makes the error visible
  float target = (!ignored && !bad) ? ldx(logits, logits_dt, base + label) : 0.f;
  __syncthreads();  // all reads of the row are done before dlogits (maybe the same memory) is written
  if (threadIdx.x == 0) losses[row] = ignored ? 0.f : (bad ? NAN : lse - target);
  if (dlogits) {
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      float g = 0.f;
      if (!ignored) {
        float y = ldx(logits, logits_dt, base + j);
        g = grad_scale * (expf(y - lse) - (j == label ? 1.f : 0.f));
        if (soft_cap > 0.f) {
          float t = y / soft_cap;
          g *= 1.f - t * t;
        }
      }
      stx(dlogits, dlogits_dt, base + j, g);
    }
  }
}
