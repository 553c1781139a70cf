// elementwise.cu: memory-bound elementwise kernels (launch rule EW/EW2D:
// grid-stride loops, so any grid size is correct). Each reads and writes
// float32 or bfloat16 per its *_dt arguments and computes in float32.
#include "common.cuh"

extern "C" __global__ void gt_fill(void* x, int x_dt, int n, float v) {
  GT_GRID_STRIDE(i, n) stx(x, x_dt, i, v);
}

extern "C" __global__ void gt_copy_block(void* dst, int dst_dt, int dst_stride, const void* src, int src_dt,
                                         int src_stride, int rows, int cols, int accumulate) {
  long long total = (long long)rows * cols;
  GT_GRID_STRIDE(i, total) {
    long long r = i / cols, c = i - r * cols;
    long long di = r * dst_stride + c;
    float v = ldx(src, src_dt, r * src_stride + c);
    if (accumulate) v += ldx(dst, dst_dt, di);
    stx(dst, dst_dt, di, v);
  }
}

extern "C" __global__ void gt_add(void* dst, int dst_dt, const void* a, int a_dt, const void* b, int b_dt, int n) {
  GT_GRID_STRIDE(i, n) stx(dst, dst_dt, i, ldx(a, a_dt, i) + ldx(b, b_dt, i));
}

extern "C" __global__ void gt_mul(void* dst, int dst_dt, const void* a, int a_dt, const void* b, int b_dt, int n) {
  GT_GRID_STRIDE(i, n) stx(dst, dst_dt, i, ldx(a, a_dt, i) * ldx(b, b_dt, i));
}

extern "C" __global__ void gt_axpy(void* dst, int dst_dt, const void* x, int x_dt, int n, float alpha) {
  GT_GRID_STRIDE(i, n) stx(dst, dst_dt, i, ldx(dst, dst_dt, i) + alpha * ldx(x, x_dt, i));
}

extern "C" __global__ void gt_scale(void* x, int x_dt, int n, float alpha) {
  GT_GRID_STRIDE(i, n) stx(x, x_dt, i, ldx(x, x_dt, i) * alpha);
}

extern "C" __global__ void gt_dropout(void* out, int out_dt, const void* x, int x_dt, int n, int seed_lo, int seed_hi,
                                      int threshold, float keep_scale) {
  unsigned long long seed = gt_seed64(seed_lo, seed_hi);
  GT_GRID_STRIDE(i, n) {
    float v = gt_dropout_keep(seed, (unsigned long long)i, (unsigned)threshold) ? ldx(x, x_dt, i) * keep_scale : 0.f;
    stx(out, out_dt, i, v);
  }
}

extern "C" __global__ void gt_mul_cols(void* dst, int dst_dt, const void* x, int x_dt, const void* v, int v_dt, int n,
                                       int cols) {
  GT_GRID_STRIDE(i, n) stx(dst, dst_dt, i, ldx(x, x_dt, i) * ldx(v, v_dt, i % cols));
}

extern "C" __global__ void gt_add_bias(void* x, int x_dt, const void* bias, int bias_dt, int n, int cols) {
  GT_GRID_STRIDE(i, n) stx(x, x_dt, i, ldx(x, x_dt, i) + ldx(bias, bias_dt, i % cols));
}

extern "C" __global__ void gt_activation(void* out, int out_dt, const void* x, int x_dt, int n, int act) {
  GT_GRID_STRIDE(i, n) stx(out, out_dt, i, act_f(ldx(x, x_dt, i), act));
}

extern "C" __global__ void gt_activation_backward(void* dx, int dx_dt, const void* dout, int dout_dt, const void* x,
                                                  int x_dt, int n, int act) {
  GT_GRID_STRIDE(i, n) {
    float g = ldx(dout, dout_dt, i) * act_grad(ldx(x, x_dt, i), act);
    stx(dx, dx_dt, i, ldx(dx, dx_dt, i) + g);
  }
}

extern "C" __global__ void gt_swiglu(void* out, int out_dt, const void* gate, int gate_dt, const void* up, int up_dt,
                                     int n) {
  GT_GRID_STRIDE(i, n) {
    float g = ldx(gate, gate_dt, i);
    stx(out, out_dt, i, g * gt_sigmoid(g) * ldx(up, up_dt, i));
  }
}

extern "C" __global__ void gt_swiglu_backward(void* dgate, int dgate_dt, void* dup, int dup_dt, const void* dout,
                                              int dout_dt, const void* gate, int gate_dt, const void* up, int up_dt,
                                              int n) {
  GT_GRID_STRIDE(i, n) {
    float g = ldx(gate, gate_dt, i), u = ldx(up, up_dt, i), d = ldx(dout, dout_dt, i);
    float s = gt_sigmoid(g);
    if (dgate) stx(dgate, dgate_dt, i, ldx(dgate, dgate_dt, i) + d * u * s * (1.f + g * gt_sigmoid(-g)));
    if (dup) stx(dup, dup_dt, i, ldx(dup, dup_dt, i) + d * g * s);
  }
}

extern "C" __global__ void gt_geglu(void* out, int out_dt, const void* gate, int gate_dt, const void* up, int up_dt,
                                    int n) {
  GT_GRID_STRIDE(i, n) stx(out, out_dt, i, act_f(ldx(gate, gate_dt, i), GT_ACT_GELU_TANH) * ldx(up, up_dt, i));
}

extern "C" __global__ void gt_geglu_backward(void* dgate, int dgate_dt, void* dup, int dup_dt, const void* dout,
                                             int dout_dt, const void* gate, int gate_dt, const void* up, int up_dt,
                                             int n) {
  GT_GRID_STRIDE(i, n) {
    float g = ldx(gate, gate_dt, i), d = ldx(dout, dout_dt, i);
    if (dgate)
      stx(dgate, dgate_dt, i, ldx(dgate, dgate_dt, i) + d * ldx(up, up_dt, i) * act_grad(g, GT_ACT_GELU_TANH));
    if (dup) stx(dup, dup_dt, i, ldx(dup, dup_dt, i) + d * act_f(g, GT_ACT_GELU_TANH));
  }
}

// gt_adamw follows torch.optim.AdamW (and the CPU backend) operation by
// operation: p *= 1-lr·wd; m, v moments; p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps).
extern "C" __global__ void gt_adamw(void* param, int param_dt, const void* grad, int grad_dt, void* m, int m_dt,
                                    void* v, int v_dt, int n, float lr, float beta1, float beta2, float eps,
                                    float weight_decay, float bc1, float bc2) {
  float decay = 1.f - lr * weight_decay;
  float neg_step = -lr / bc1;
  float bc2_sqrt = sqrtf(bc2);
  GT_GRID_STRIDE(i, n) {
    float g = ldx(grad, grad_dt, i);
    float p = ldx(param, param_dt, i) * decay;
    float mi = ldx(m, m_dt, i) * beta1 + (1.f - beta1) * g;
    float vi = ldx(v, v_dt, i) * beta2 + (1.f - beta2) * g * g;
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    stx(param, param_dt, i, p + neg_step * mi / denom);
    stx(m, m_dt, i, mi);
    stx(v, v_dt, i, vi);
  }
}

// gt_rope rotates pair i of each head vector by the angle of position
// pos_offset + t (RopeHalf pairs i and i+D/2; interleaved pairs 2i, 2i+1).
extern "C" __global__ void gt_rope(void* x, int x_dt, const void* cosv, const void* sinv, int cs_dt, int n, int seq,
                                   int heads, int head_dim, int pos_offset, int interleaved, int inverse) {
  int half = head_dim / 2;
  GT_GRID_STRIDE(p, n) {
    long long i = p % half, vec = p / half;  // vec = (b*seq + t)*heads + h
    long long t = (vec / heads) % seq;
    long long pos = pos_offset + t;
    float c = ldx(cosv, cs_dt, pos * half + i), s = ldx(sinv, cs_dt, pos * half + i);
    if (inverse) s = -s;
    long long base = vec * head_dim;
    long long ia = interleaved ? base + 2 * i : base + i;
    long long ib = interleaved ? ia + 1 : ia + half;
    float a = ldx(x, x_dt, ia), b = ldx(x, x_dt, ib);
    stx(x, x_dt, ia, a * c - b * s);
    stx(x, x_dt, ib, b * c + a * s);
  }
}

extern "C" __global__ void gt_embedding(void* out, int out_dt, const void* table, int table_dt, const int* ids, int n,
                                        int dim, int vocab) {
  GT_GRID_STRIDE(i, n) {
    long long r = i / dim, j = i - r * dim;
    int id = ids[r];
    float v = (id >= 0 && id < vocab) ? ldx(table, table_dt, (long long)id * dim + j) : 0.f;
    stx(out, out_dt, i, v);
  }
}

extern "C" __global__ void gt_embedding_backward(void* dtable, int dtable_dt, const void* dout, int dout_dt,
                                                 const int* ids, int n, int dim, int vocab) {
  GT_GRID_STRIDE(i, n) {
    long long r = i / dim, j = i - r * dim;
    int id = ids[r];
    if (id >= 0 && id < vocab) atomic_addx(dtable, dtable_dt, (long long)id * dim + j, ldx(dout, dout_dt, i));
  }
}
