// ONNX's Resize (opsets 11+) as one fixed interpolation matrix per resized axis: nearest,
// linear and cubic sampling are separable, so each axis's [out, in] weights (computed here
// as ONNX's reference computes them: the coordinate transform, the n nearest input
// positions with edge padding, their coefficients) multiply x along that axis, a matrix
// product that trains like any other. tf_crop_and_resize samples the region of interest and
// gives extrapolation_value where a sample falls outside x on any axis (a mask of per-axis
// flags); antialias is refused.
import { elementCount } from '../../ir/types';
import type { Converter } from './converters';
import type { NodeContext } from './context';
import { FLOAT } from './proto';
import { computed, folded, foldable, type Value } from './values';

const TRANSFORMS = ['half_pixel', 'half_pixel_symmetric', 'pytorch_half_pixel', 'align_corners', 'asymmetric', 'tf_half_pixel_for_nn', 'tf_crop_and_resize'];

/** The coefficients of the two (nearest, linear) or four (cubic) neighbours at fraction `ratio` ∈ (0, 1]. */
function coefficients(mode: string, ratio: number, nearestMode: string, a: number): number[] {
  if (mode === 'nearest') {
    if (ratio === 1) return [0, 1];
    if (nearestMode === 'round_prefer_floor') return ratio <= 0.5 ? [1, 0] : [0, 1];
    if (nearestMode === 'round_prefer_ceil') return ratio < 0.5 ? [1, 0] : [0, 1];
    return nearestMode === 'floor' ? [1, 0] : [0, 1];
  }
  if (mode === 'linear') return [1 - ratio, ratio];
  const r = ratio;
  const s = 1 - ratio;
  return [
    ((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
    ((a + 2) * r - (a + 3)) * r * r + 1,
    ((a + 2) * s - (a + 3)) * s * s + 1,
    ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a,
  ];
}

/** The [out, in] interpolation weights of one axis, and which outputs sample outside x (tf_crop_and_resize: [roi start, roi end]). */
function axisWeights(ctx: NodeContext, size: number, out: number, scale: number, mode: string, roi: [number, number]): { weights: Float64Array; outside: boolean[] } {
  const transform = ctx.string('coordinate_transformation_mode', 'half_pixel');
  const nearestMode = ctx.string('nearest_mode', 'round_prefer_floor');
  const a = ctx.float('cubic_coeff_a', -0.75);
  const excludeOutside = ctx.int('exclude_outside', 0) !== 0;
  // the reference's resized length is scale·size, a float where scales were given
  const length = scale * size;
  const weights = new Float64Array(foldable([out, size]));
  const outside = Array<boolean>(out).fill(false);
  for (let x = 0; x < out; x++) {
    let origin: number;
    if (transform === 'tf_crop_and_resize') {
      origin = roi[0] * (size - 1) + (length === 1 ? ((roi[1] - roi[0]) * (size - 1)) / 2 : (x * (roi[1] - roi[0]) * (size - 1)) / (length - 1));
      if (origin < 0 || origin > size - 1) {
        outside[x] = true;
        continue;
      }
    } else if (transform === 'align_corners') origin = length === 1 ? 0 : (x * (size - 1)) / (length - 1);
    else if (transform === 'asymmetric') origin = x / scale;
    else if (transform === 'pytorch_half_pixel') origin = length === 1 ? -0.5 : (x + 0.5) / scale - 0.5;
    else if (transform === 'tf_half_pixel_for_nn') origin = (x + 0.5) / scale;
    else if (transform === 'half_pixel_symmetric') {
      const adjustment = out / length;
      origin = (size / 2) * (1 - adjustment) + (x + 0.5) / scale - 0.5;
    } else origin = (x + 0.5) / scale - 0.5;
    const below = Math.floor(origin);
    // the neighbours lean left: at an integer position its fraction is 1 (the position is the last neighbour on the left)
    const ratio = Number.isInteger(origin) ? 1 : origin - below;
    const coeffs = coefficients(mode, ratio, nearestMode, a);
    const first = (Number.isInteger(origin) ? origin : below + 1) - coeffs.length / 2;
    const inside = coeffs.map((_, k) => first + k >= 0 && first + k < size);
    if (excludeOutside) {
      const total = coeffs.reduce((sum, c, k) => sum + (inside[k] ? c : 0), 0);
      coeffs.forEach((c, k) => (coeffs[k] = inside[k] ? c / total : 0));
    }
    // edge padding: a neighbour past either end reads the end
    coeffs.forEach((c, k) => (weights[x * size + Math.min(Math.max(first + k, 0), size - 1)] += c));
  }
  return { weights, outside };
}

const resize: Converter = {
  since: 11,
  convert: (ctx) => {
    const x = ctx.input(0);
    ctx.requireFloat(x);
    const shape = ctx.shape(x);
    const rank = shape.length;
    const mode = ctx.string('mode', 'nearest');
    if (!['nearest', 'linear', 'cubic'].includes(mode)) ctx.fail(`mode must be nearest, linear or cubic; got '${mode}'`);
    const transform = ctx.string('coordinate_transformation_mode', 'half_pixel');
    if (!TRANSFORMS.includes(transform)) ctx.fail(`coordinate_transformation_mode '${transform}' is not supported; supported: ${TRANSFORMS.join(', ')}`);
    if (ctx.int('antialias', 0) !== 0) ctx.fail('antialias = 1 is not supported');
    const nearestMode = ctx.string('nearest_mode', 'round_prefer_floor');
    if (!['round_prefer_floor', 'round_prefer_ceil', 'floor', 'ceil'].includes(nearestMode)) ctx.fail(`nearest_mode must be round_prefer_floor, round_prefer_ceil, floor or ceil; got '${nearestMode}'`);
    const axes = (ctx.ints('axes') ?? shape.map((_, i) => i)).map((a) => ctx.axis(a, rank, 'axes entry'));
    const scalesGiven = ctx.optional(2) && ctx.count(ctx.input(2)) > 0 ? ctx.knownInts(2, 'scales') : undefined;
    const sizesGiven = ctx.optional(3) && ctx.count(ctx.input(3)) > 0 ? ctx.knownInts(3, 'sizes') : undefined;
    if (!scalesGiven === !sizesGiven) ctx.fail('exactly one of scales and sizes must be given');
    const given = (scalesGiven ?? sizesGiven)!;
    if (given.length !== axes.length) ctx.fail(`${scalesGiven ? 'scales' : 'sizes'} has ${given.length} entries; it needs one per resized axis (${axes.length})`);
    let scales: number[];
    let sizes: number[];
    if (scalesGiven) {
      // f32 scales, as the model holds them
      scales = scalesGiven.map(Math.fround);
      sizes = axes.map((axis, k) => Math.floor(shape[axis] * scales[k]));
    } else {
      const policy = ctx.string('keep_aspect_ratio_policy', 'stretch');
      if (policy === 'stretch') {
        sizes = sizesGiven!;
        scales = axes.map((axis, k) => sizes[k] / shape[axis]);
      } else if (policy === 'not_larger' || policy === 'not_smaller') {
        const ratios = axes.map((axis, k) => sizesGiven![k] / shape[axis]);
        const common = policy === 'not_larger' ? Math.min(...ratios) : Math.max(...ratios);
        scales = axes.map(() => common);
        sizes = axes.map((axis) => Math.round(common * shape[axis]));
      } else return ctx.fail(`keep_aspect_ratio_policy must be stretch, not_larger or not_smaller; got '${policy}'`);
    }
    if (sizes.some((s) => !Number.isInteger(s) || s <= 0) || scales.some((s) => !(s > 0))) ctx.fail(`the output sizes [${sizes.join(', ')}] (scales [${scales.join(', ')}]) must be positive`);
    // the region of interest (tf_crop_and_resize only): starts, then ends, of the resized axes in [0, 1]
    const roi = transform === 'tf_crop_and_resize' ? ctx.knownInts(1, 'roi') ?? ctx.fail('tf_crop_and_resize needs roi') : undefined;
    if (roi && roi.length !== 2 * axes.length) ctx.fail(`roi has ${roi.length} entries; it needs ${2 * axes.length} (a start and an end per resized axis)`);
    let y: Value = x;
    const outsideMasks: Value[] = [];
    axes.forEach((axis, k) => {
      const size = shape[axis];
      const out = sizes[k];
      const { weights, outside } = axisWeights(ctx, size, out, scales[k], mode, roi ? [roi[k], roi[k + axes.length]] : [0, 1]);
      if (outside.some((o) => o)) outsideMasks.push(folded(FLOAT, shape.map((_, i) => (i === axis ? out : 1)), Float64Array.from(outside, (o) => (o ? 0 : 1))));
      // an axis left as it is (N and C, usually) costs nothing
      if (out === size && weights.every((w, i) => w === (Math.floor(i / size) === i % size ? 1 : 0))) return;
      const current = ctx.shape(y);
      const perm = current.map((_, i) => i).filter((i) => i !== axis).concat(axis);
      const moved = perm.every((p, i) => p === i) ? y : ctx.apply('transpose', [y], { perm }, y.dataType);
      const rows = ctx.apply('reshape', [moved], { shape: [elementCount(current) / size, size] }, y.dataType);
      const transposed = new Float64Array(size * out);
      for (let o = 0; o < out; o++) for (let i = 0; i < size; i++) transposed[i * out + o] = weights[o * size + i];
      const product = ctx.apply('matmul', [rows, folded(FLOAT, [size, out], transposed)], {}, y.dataType);
      const movedShape = perm.map((p) => (p === axis ? out : current[p]));
      const back = ctx.apply('reshape', [product], { shape: movedShape }, y.dataType);
      const inverse = perm.map((_, i) => perm.indexOf(i));
      y = inverse.every((p, i) => p === i) ? back : ctx.apply('transpose', [back], { perm: inverse }, y.dataType);
    });
    if (outsideMasks.length === 0) return [y];
    // extrapolation_value where any axis sampled outside: the per-axis 0/1 flags multiplied at run time (small operands, broadcast)
    const inside = outsideMasks.slice(1).reduce<Value>((m, v) => computed(FLOAT, ctx.record('mul', [ctx.tensor(m), ctx.tensor(v)], {})), outsideMasks[0]);
    const extrapolation = folded(FLOAT, [], Float64Array.of(ctx.float('extrapolation_value', 0)));
    return [ctx.apply('where', [inside, y, extrapolation], {}, y.dataType)];
  },
};

/** The resampling ops by ONNX op type. */
export const RESIZE_CONVERTERS: Readonly<Record<string, Converter>> = { Resize: resize };
