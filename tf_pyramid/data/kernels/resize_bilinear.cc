// TfPyramidResizeBilinear: bilinear resize of uint8 RGB images to float32, optionally scaled and
// mapped onto a value range in the same pass.
//
// The values equal TensorFlow's `tf.image.resize(images, size)` (ResizeBilinear with half-pixel
// centres) followed by `* scale` and, with `map_to_range`, by
// `clip_by_value(x, 0, 1) * range_span + range_low` (range_span = high - low, computed by the
// caller as the TF graph computes it): the same interpolation taps and weights (computed
// as TF computes them, in float), the same order of operations (each source row is interpolated
// horizontally, then the two rows vertically), and no fused multiply-add. TensorFlow's kernel
// converts each source byte to float one at a time and allocates a tensor per following op; here
// a row is interpolated horizontally once (two output rows often share it), eight values at a
// time from two 16-byte windows and one byte shuffle (AVX2), and the vertical step writes the
// final values. tf_pyramid/data/compiled_ops.py compiles this file on first use and checks the
// op against TensorFlow's ops, value for value, before using it. docs/data.md "Compiled kernels".
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tf_pyramid {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

constexpr int kChannels = 3;
constexpr int kLanes = 8;        // output values per vector step
constexpr int kWindow = 16;      // bytes per source window (4 output values)
constexpr int kRowPadding = 32;  // zero bytes after a copied source row: windows may overrun it

typedef float Floats __attribute__((vector_size(4 * kLanes)));

// Source taps along one axis, as TensorFlow computes them for half-pixel centres: the position
// (i + 0.5) * in / out - 0.5 in float, lower = max(floor, 0), upper = min(ceil, in - 1), and the
// weight of the upper tap = position - floor.
struct Taps {
  std::vector<int64_t> lower, upper;
  std::vector<float> weight;
};

Taps ComputeTaps(int64_t in_size, int64_t out_size) {
  Taps taps;
  const float scale = in_size / static_cast<float>(out_size);
  for (int64_t i = 0; i < out_size; ++i) {
    const float position = (static_cast<float>(i) + 0.5f) * scale - 0.5f;
    const float floor = std::floor(position);
    taps.lower.push_back(std::max<int64_t>(static_cast<int64_t>(floor), 0));
    taps.upper.push_back(std::min<int64_t>(static_cast<int64_t>(std::ceil(position)),
                                           in_size - 1));
    taps.weight.push_back(position - floor);
  }
  return taps;
}

// The horizontal pass of one source row: for each output value k (pixel k / 3, channel k % 3),
// a + (b - a) * weight with a, b the left and right source bytes. The right byte is always read
// 3 bytes after the left one; where TF's two taps coincide (borders, integer positions) the weight
// is 0, and a + (b - a) * 0 == a, TF's value.
class RowInterpolator {
 public:
  RowInterpolator(const Taps& columns, int64_t in_width)
      : width_bytes_(in_width * kChannels), row_(width_bytes_ + kRowPadding, 0) {
    const int64_t values = static_cast<int64_t>(columns.lower.size()) * kChannels;
    for (int64_t k = 0; k < values; ++k) {
      const int64_t x = k / kChannels;
      offset_.push_back(static_cast<int32_t>(columns.lower[x] * kChannels + k % kChannels));
      weight_.push_back(columns.upper[x] != columns.lower[x] ? columns.weight[x] : 0.0f);
    }
#if defined(__AVX2__)
    // Blocks of 8 values: values 0-3 from a 16-byte window at the offset of value 0, values 4-7
    // from one at the offset of value 4; the shuffle puts value j's left byte in bits 0-7 of 32-bit
    // lane j and its right byte in bits 16-23. A block whose bytes do not fit its windows (a
    // shrink by more than 2x) is done one value at a time.
    blocks_ = values / kLanes;
    for (int64_t block = 0; block < blocks_; ++block) {
      bool fits = true;
      for (int half = 0; half < 2; ++half) {
        const int64_t first = block * kLanes + half * 4;
        window_.push_back(offset_[first]);
        for (int j = 0; j < 4; ++j) {
          const int32_t left = offset_[first + j] - offset_[first];
          fits = fits && left >= 0 && left + kChannels < kWindow;
          const uint8_t lane[4] = {static_cast<uint8_t>(left), 0x80,
                                   static_cast<uint8_t>(left + kChannels), 0x80};
          shuffle_.insert(shuffle_.end(), lane, lane + 4);
        }
      }
      fits_.push_back(fits);
    }
#endif
  }

  // Interpolates `source` (a row of in_width RGB bytes) into `out` (out_width * 3 floats).
  void Interpolate(const uint8_t* source, float* out) {
    std::memcpy(row_.data(), source, width_bytes_);  // zero padding after it
    const uint8_t* row = row_.data();
    int64_t k = 0;
#if defined(__AVX2__)
    const __m256i low_half = _mm256_set1_epi32(0xFFFF);
    for (int64_t block = 0; block < blocks_; ++block, k += kLanes) {
      if (!fits_[block]) {
        for (int j = 0; j < kLanes; ++j) One(row, out, k + j);
        continue;
      }
      const __m128i first = _mm_loadu_si128(
          reinterpret_cast<const __m128i*>(row + window_[2 * block]));
      const __m128i second = _mm_loadu_si128(
          reinterpret_cast<const __m128i*>(row + window_[2 * block + 1]));
      const __m256i bytes = _mm256_inserti128_si256(_mm256_castsi128_si256(first), second, 1);
      const __m256i pairs = _mm256_shuffle_epi8(
          bytes, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&shuffle_[32 * block])));
      const __m256 a = _mm256_cvtepi32_ps(_mm256_and_si256(pairs, low_half));
      const __m256 b = _mm256_cvtepi32_ps(_mm256_srli_epi32(pairs, 16));
      const __m256 weight = _mm256_loadu_ps(&weight_[k]);
      _mm256_storeu_ps(out + k, _mm256_add_ps(a, _mm256_mul_ps(_mm256_sub_ps(b, a), weight)));
    }
#endif
    for (; k < static_cast<int64_t>(offset_.size()); ++k) One(row, out, k);
  }

 private:
  void One(const uint8_t* row, float* out, int64_t k) const {
    const float a = row[offset_[k]], b = row[offset_[k] + kChannels];
    out[k] = a + (b - a) * weight_[k];
  }

  int64_t width_bytes_;
  std::vector<uint8_t> row_;
  std::vector<int32_t> offset_;
  std::vector<float> weight_;
  int64_t blocks_ = 0;
  std::vector<int32_t> window_;
  std::vector<uint8_t> shuffle_;
  std::vector<bool> fits_;
};

class ResizeBilinearOp : public OpKernel {
 public:
  explicit ResizeBilinearOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("scale", &scale_));
    OP_REQUIRES_OK(context, context->GetAttr("map_to_range", &to_range_));
    OP_REQUIRES_OK(context, context->GetAttr("range_low", &low_));
    OP_REQUIRES_OK(context, context->GetAttr("range_span", &span_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& images = context->input(0);
    const Tensor& size = context->input(1);
    OP_REQUIRES(context, (images.dims() == 3 || images.dims() == 4) &&
                             images.dim_size(images.dims() - 1) == kChannels,
                absl::InvalidArgumentError("images must be uint8 RGB [H, W, 3] or [N, H, W, 3]; "
                                           "got shape " + images.shape().DebugString()));
    OP_REQUIRES(context, size.dims() == 1 && size.NumElements() == 2,
                absl::InvalidArgumentError("size must be [height, width]"));
    const int64_t out_height = size.flat<int32_t>()(0), out_width = size.flat<int32_t>()(1);
    OP_REQUIRES(context, out_height > 0 && out_width > 0,
                absl::InvalidArgumentError("size must be positive"));
    const int rank = images.dims();
    const int64_t batch = rank == 4 ? images.dim_size(0) : 1;
    const int64_t in_height = images.dim_size(rank - 3), in_width = images.dim_size(rank - 2);
    OP_REQUIRES(context, in_height > 0 && in_width > 0,
                absl::InvalidArgumentError("images must not be empty; got shape " +
                                           images.shape().DebugString()));
    TensorShape shape({out_height, out_width, kChannels});
    if (rank == 4) shape.InsertDim(0, batch);
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, shape, &output));

    const Taps rows = ComputeTaps(in_height, out_height);
    RowInterpolator interpolator(ComputeTaps(in_width, out_width), in_width);
    const int64_t row_values = out_width * kChannels;
    const int64_t in_row_bytes = in_width * kChannels;
    std::vector<float> top_row(row_values), bottom_row(row_values);
    const uint8_t* in = images.flat<uint8_t>().data();
    float* out = output->flat<float>().data();
    for (int64_t n = 0; n < batch; ++n) {
      const uint8_t* image = in + n * in_height * in_row_bytes;
      int64_t top_source = -1, bottom_source = -1;  // the source rows top_row, bottom_row hold
      for (int64_t y = 0; y < out_height; ++y) {
        const int64_t top = rows.lower[y], bottom = rows.upper[y];
        if (top_source != top) {
          if (bottom_source == top) {
            std::swap(top_row, bottom_row);
            std::swap(top_source, bottom_source);
          } else {
            interpolator.Interpolate(image + top * in_row_bytes, top_row.data());
            top_source = top;
          }
        }
        if (bottom_source != bottom) {
          if (bottom == top) {
            bottom_row = top_row;
          } else {
            interpolator.Interpolate(image + bottom * in_row_bytes, bottom_row.data());
          }
          bottom_source = bottom;
        }
        Vertical(top_row.data(), bottom_row.data(), rows.weight[y], row_values,
                 out + (n * out_height + y) * row_values);
      }
    }
  }

 private:
  // out = (t + (b - t) * weight) * scale, then optionally min(., 1), max(., 0), * span + low.
  void Vertical(const float* t, const float* b, float weight, int64_t count, float* out) const {
    const Floats w = Floats{} + weight, scale = Floats{} + scale_, zero = Floats{},
                 one = zero + 1.0f, span = zero + span_, low = zero + low_;
    int64_t k = 0;
    for (; k + kLanes <= count; k += kLanes) {
      Floats top, bottom;
      std::memcpy(&top, t + k, sizeof(Floats));
      std::memcpy(&bottom, b + k, sizeof(Floats));
      Floats v = (top + (bottom - top) * w) * scale;
      if (to_range_) {
        v = v < one ? v : one;
        v = v > zero ? v : zero;
        v = v * span + low;
      }
      std::memcpy(out + k, &v, sizeof(Floats));
    }
    for (; k < count; ++k) {
      float v = (t[k] + (b[k] - t[k]) * weight) * scale_;
      if (to_range_) {
        v = v < 1.0f ? v : 1.0f;
        v = v > 0.0f ? v : 0.0f;
        v = v * span_ + low_;
      }
      out[k] = v;
    }
  }

  float scale_, low_, span_;
  bool to_range_;
};

}  // namespace

REGISTER_OP("TfPyramidResizeBilinear")
    .Input("images: uint8")
    .Input("size: int32")
    .Output("resized: float")
    .Attr("scale: float = 1.0")
    .Attr("map_to_range: bool = false")
    .Attr("range_low: float = 0.0")
    .Attr("range_span: float = 1.0")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle size;
      TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(1, &size));
      ::tensorflow::shape_inference::ShapeHandle images = c->input(0);
      if (!c->RankKnown(images)) {
        c->set_output(0, c->UnknownShape());
        return absl::OkStatus();
      }
      ::tensorflow::shape_inference::ShapeHandle batch, out;
      TF_RETURN_IF_ERROR(c->Subshape(images, 0, -3, &batch));
      TF_RETURN_IF_ERROR(c->Concatenate(batch, size, &out));
      TF_RETURN_IF_ERROR(c->Concatenate(out, c->Vector(kChannels), &out));
      c->set_output(0, out);
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("TfPyramidResizeBilinear").Device(::tensorflow::DEVICE_CPU),
                        ResizeBilinearOp);

}  // namespace tf_pyramid
