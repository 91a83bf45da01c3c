#ifndef DDX_BENCH_KERNELS_H
#define DDX_BENCH_KERNELS_H
// `ddx-bench kernels`: CUDA conv and attention against cuBLAS and cuDNN, the fused optimizer
// against the device copy, all in the same run.
int ddx_bench_kernels(int argc, char **argv);
// `ddx-bench step`: a config's training step and sampling forward (bench/bench_step.c).
int ddx_bench_step(int argc, char **argv);
// `ddx-bench inception`: FID Inception features img/s (bench/bench_inception.c).
int ddx_bench_inception(int argc, char **argv);
// `ddx-bench inpaint`: inpainting and RePaint sampling vs plain sampling (bench/bench_inpaint.c).
int ddx_bench_inpaint(int argc, char **argv);
int ddx_bench_sr(int argc, char **argv);
// `ddx-bench guidance`: guided vs unguided sampling per step at the same batch (bench/bench_guidance.c).
int ddx_bench_guidance(int argc, char **argv);
#endif
