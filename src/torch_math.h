/* torch_math.h — torch's float32 expm1 as its CPU kernel computes it, bit for bit.
 *
 * torch evaluates expm1 on float32 tensors with SLEEF's 1-ulp vector function Sleef_expm1f8_u10
 * (AVX2; the same algorithm serves the other SIMD builds), which is not correctly rounded. The UniPC
 * scheduler's B(h) = expm1(-h) goes through it, so wan.c reproduces that scalar exactly (checked on
 * 450k inputs against torch 2.15). torch's log and exp on float32 go through Intel MKL's VML instead
 * (vsLn/vsExp, "HA" accuracy): closed code that cannot be re-derived; wan.c uses correctly rounded
 * values there (see docs/MODEL.md). Scalar C, no dependence on the CPU it runs on. Internal header. */
#ifndef WAN_TORCH_MATH_H
#define WAN_TORCH_MATH_H

float wan_torch_expm1f(float x);

#endif /* WAN_TORCH_MATH_H */
