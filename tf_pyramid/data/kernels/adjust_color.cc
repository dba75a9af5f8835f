// TfPyramidAdjustColor: brightness, saturation and hue adjustments of RGB float images, applied in
// a given order in one pass over the pixels, with SIMD vectors (GCC/Clang vector extensions).
//
// Each step gives the same float32 values as TensorFlow's own op for it (AdjustBrightness is an
// Add; AdjustSaturation and AdjustHue are TF's scalar per-pixel kernels): the same formulas, the
// same comparisons and the same roundings (a double-precision add where TF's code has one),
// compiled without floating-point contraction. tf_pyramid/data/compiled_ops.py compiles this file
// on first use and checks the loaded kernel against TensorFlow's ops, value for value, before
// using it; where either fails, the pipeline uses TensorFlow's ops (docs/data.md, "Compiled
// kernels").
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tf_pyramid {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;

#if defined(__AVX__)
constexpr int kLanes = 8;  // 256-bit registers
#else
constexpr int kLanes = 4;  // SSE2, NEON: 128-bit registers
#endif
typedef float Floats __attribute__((vector_size(4 * kLanes)));
typedef int32_t Mask __attribute__((vector_size(4 * kLanes)));
typedef double Doubles __attribute__((vector_size(8 * kLanes)));

constexpr int kBlock = 256;  // pixels de-interleaved into planes at a time (3 kB, in L1)

inline Floats Splat(float x) { return Floats{} + x; }

// max(a, max(b, c)) and min(a, min(b, c)) with std::max / std::min's comparisons.
inline Floats Max3(Floats a, Floats b, Floats c) {
  const Floats bc = b < c ? c : b;
  return a < bc ? bc : a;
}
inline Floats Min3(Floats a, Floats b, Floats c) {
  const Floats bc = c < b ? c : b;
  return bc < a ? bc : a;
}

// x + constant, added in double precision and rounded to float (as TF's `h + 2.0 / 6.0`).
inline Floats AddInDouble(Floats x, double constant) {
  return __builtin_convertvector(__builtin_convertvector(x, Doubles) + constant, Floats);
}

// Saturation: RGB -> HSV (h in [0, 1]), s times `factor` clipped to [0, 1], HSV -> RGB.
// Pixels whose maximum is <= 0 have s = 0 and come out grey at that maximum, as in TF.
inline void Saturate(Floats& r, Floats& g, Floats& b, float factor) {
  const Floats zero = Splat(0.0f), one = Splat(1.0f);
  const Floats v = Max3(r, g, b);
  const Floats range = v - Min3(r, g, b);
  const Floats s = v > zero ? range / v : zero;
  const Floats norm = one / (Splat(6.0f) * range);
  Floats h = r == v ? norm * (g - b)
                    : (g == v ? AddInDouble(norm * (b - r), 2.0 / 6.0)
                              : AddInDouble(norm * (r - g), 4.0 / 6.0));
  h = range <= zero ? zero : h;
  h = h < zero ? h + one : h;
  Floats scaled = s * factor;
  scaled = scaled > zero ? scaled : zero;
  scaled = scaled < one ? scaled : one;
  const Floats chroma = scaled * v;
  const Floats low = v - chroma;
  const Floats sextant = h * 6.0f;  // in [0, 6]; 6 (h rounded up to 1) gives black + low, as TF
  const Floats within = sextant >= 4.0f ? sextant - 4.0f
                                        : (sextant >= 2.0f ? sextant - 2.0f : sextant);
  const Floats centred = within - one;
  const Floats mid = chroma * (one - (centred < zero ? -centred : centred));
  const Mask k0 = sextant < 1.0f, k1 = (sextant >= 1.0f) & (sextant < 2.0f),
             k2 = (sextant >= 2.0f) & (sextant < 3.0f), k3 = (sextant >= 3.0f) & (sextant < 4.0f),
             k4 = (sextant >= 4.0f) & (sextant < 5.0f), k5 = (sextant >= 5.0f) & (sextant < 6.0f);
  r = ((k0 | k5) ? chroma : ((k1 | k4) ? mid : zero)) + low;
  g = ((k1 | k2) ? chroma : ((k0 | k3) ? mid : zero)) + low;
  b = ((k3 | k4) ? chroma : ((k2 | k5) ? mid : zero)) + low;
}

// Hue: rotation by `delta6` (delta times 6) in TF's (h in [0, 6), min, max) form, which keeps
// each pixel's minimum and maximum and moves the middle channel.
inline void RotateHue(Floats& r, Floats& g, Floats& b, float delta6) {
  const Floats zero = Splat(0.0f), one = Splat(1.0f), six = Splat(6.0f);
  // The six orders of the channels; ties go where TF's comparisons send them.
  const Mask r_below_g = r < g;
  const Mask b_lowest = r_below_g ? (b < r) : (b < g);
  const Mask b_highest = r_below_g ? (b > g) : (b > r);
  const Floats high = r_below_g ? (b_highest ? b : g) : (b_highest ? b : r);
  const Floats low = r_below_g ? (b_lowest ? b : r) : (b_lowest ? b : g);
  const Floats middle = r_below_g ? (b_lowest ? r : (b_highest ? g : b))
                                  : (b_lowest ? g : (b_highest ? r : b));
  const Floats sextant = r_below_g
      ? (b_lowest ? Splat(1.0f) : (b_highest ? Splat(3.0f) : Splat(2.0f)))
      : (b_lowest ? zero : (b_highest ? Splat(4.0f) : Splat(5.0f)));
  const Mask falling = r_below_g == (b_lowest | b_highest);  // sextants 1, 3, 5
  const Floats ratio = (middle - low) / (high - low);
  Floats h = sextant + (falling ? one - ratio : ratio);
  h = high == low ? zero : h;
  h += delta6;
  h = h < zero ? h + six : h;
  h = h >= six ? h - six : h;
  const Floats k = __builtin_convertvector(__builtin_convertvector(h, Mask), Floats);
  Floats t = h - k;
  const Mask k0 = k == 0.0f, k1 = k == 1.0f, k2 = k == 2.0f, k3 = k == 3.0f, k4 = k == 4.0f;
  const Mask k5 = ~(k0 | k1 | k2 | k3 | k4);
  t = (k1 | k3 | (k == 5.0f)) ? one - t : t;
  const Floats moved = low + t * (high - low);
  r = (k0 | k5) ? high : ((k1 | k4) ? moved : low);
  g = (k1 | k2) ? high : ((k0 | k3) ? moved : low);
  b = (k3 | k4) ? high : ((k2 | k5) ? moved : low);
}

enum Step : char { kBrightness = 'b', kSaturation = 's', kHue = 'h' };

class AdjustColorOp : public OpKernel {
 public:
  explicit AdjustColorOp(OpKernelConstruction* context) : OpKernel(context) {
    std::vector<std::string> names;
    OP_REQUIRES_OK(context, context->GetAttr("steps", &names));
    for (const std::string& name : names) {
      const Step step = name == "brightness" ? kBrightness
                        : name == "saturation" ? kSaturation : kHue;
      OP_REQUIRES(context,
                  (name == "brightness" || name == "saturation" || name == "hue") &&
                      std::find(steps_.begin(), steps_.end(), step) == steps_.end(),
                  absl::InvalidArgumentError(
                      "steps must be distinct names among 'brightness', 'saturation', 'hue'; "
                      "got '" + name + "'"));
      steps_.push_back(step);
    }
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& images = context->input(0);
    OP_REQUIRES(context, images.dims() >= 1 && images.dim_size(images.dims() - 1) == 3,
                absl::InvalidArgumentError(
                    "images must be float32 RGB [..., 3]; got shape " +
                    images.shape().DebugString()));
    for (int i = 1; i <= 3; ++i) {
      OP_REQUIRES(context, context->input(i).dims() == 0,
                  absl::InvalidArgumentError("brightness_delta, saturation_factor and "
                                             "hue_delta must be scalars"));
    }
    const float brightness = context->input(1).scalar<float>()();
    const float saturation = context->input(2).scalar<float>()();
    const float hue = context->input(3).scalar<float>()();
    OP_REQUIRES(context, hue >= -1.0f && hue <= 1.0f,
                absl::InvalidArgumentError("hue_delta must be in [-1, 1]"));
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->forward_input_or_allocate_output({0}, 0, images.shape(),
                                                                      &output));
    const float* in = images.flat<float>().data();
    float* out = output->flat<float>().data();
    const int64_t pixels = images.NumElements() / 3;
    const float hue6 = hue * 6.0f;  // TF: delta_h * kChannelRange (int 6), in float
    alignas(64) float r[kBlock], g[kBlock], b[kBlock];
    for (int64_t start = 0; start < pixels; start += kBlock) {
      const int count = static_cast<int>(std::min<int64_t>(kBlock, pixels - start));
      const float* p = in + 3 * start;
      for (int i = 0; i < count; ++i) {
        r[i] = p[3 * i];
        g[i] = p[3 * i + 1];
        b[i] = p[3 * i + 2];
      }
      for (int i = count; i < kBlock; ++i) r[i] = g[i] = b[i] = 0.0f;
      for (int i = 0; i < kBlock; i += kLanes) {
        Floats vr, vg, vb;
        std::memcpy(&vr, r + i, sizeof(Floats));
        std::memcpy(&vg, g + i, sizeof(Floats));
        std::memcpy(&vb, b + i, sizeof(Floats));
        for (const Step step : steps_) {
          if (step == kBrightness) {
            vr += brightness;
            vg += brightness;
            vb += brightness;
          } else if (step == kSaturation) {
            Saturate(vr, vg, vb, saturation);
          } else {
            RotateHue(vr, vg, vb, hue6);
          }
        }
        std::memcpy(r + i, &vr, sizeof(Floats));
        std::memcpy(g + i, &vg, sizeof(Floats));
        std::memcpy(b + i, &vb, sizeof(Floats));
      }
      float* q = out + 3 * start;
      for (int i = 0; i < count; ++i) {
        q[3 * i] = r[i];
        q[3 * i + 1] = g[i];
        q[3 * i + 2] = b[i];
      }
    }
  }

 private:
  std::vector<Step> steps_;
};

}  // namespace

REGISTER_OP("TfPyramidAdjustColor")
    .Input("images: float")
    .Input("brightness_delta: float")
    .Input("saturation_factor: float")
    .Input("hue_delta: float")
    .Output("adjusted: float")
    .Attr("steps: list(string)")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("TfPyramidAdjustColor").Device(::tensorflow::DEVICE_CPU),
                        AdjustColorOp);

}  // namespace tf_pyramid
