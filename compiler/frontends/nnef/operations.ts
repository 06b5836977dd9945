// The signatures of NNEF's standard operations that the frontend implements: each
// parameter's name, kind and default as the NNEF 1.0 specification's fragment declarations
// give them, and each operation's results. Arguments bind to these as the spec says:
// positional ones fill tensor parameters in order; attributes (and everything after a
// named argument) must be named; omitted parameters take their defaults.

export type ParamKind =
  | 'tensor' // tensor<scalar> (or generic): an identifier, or a number/logical literal
  | 'tensors' // tensor<…>[]: an array of identifiers
  | 'integer'
  | 'integers'
  | 'pairs' // (integer, integer)[]
  | 'scalar'
  | 'logical'
  | 'string'
  | 'values'; // ?[]: constant's literal values

export type Literal = number | boolean | string | readonly Literal[];

export interface Param {
  name: string;
  kind: ParamKind;
  default?: Literal;
}

export interface Prototype {
  params: readonly Param[];
  /** each result: one tensor, or an array of tensors */
  results: readonly ('tensor' | 'tensors')[];
}

const p = (name: string, kind: ParamKind, fallback?: Literal): Param => (fallback === undefined ? { name, kind } : { name, kind, default: fallback });
const one: Prototype['results'] = ['tensor'];

const unary: Prototype = { params: [p('x', 'tensor')], results: one };
const binary: Prototype = { params: [p('x', 'tensor'), p('y', 'tensor')], results: one };
const windowParams = [p('border', 'string', 'constant'), p('padding', 'pairs', []), p('stride', 'integers', []), p('dilation', 'integers', [])];
const pool: Prototype = { params: [p('input', 'tensor'), p('size', 'integers'), ...windowParams], results: one };
const reduce: Prototype = { params: [p('input', 'tensor'), p('axes', 'integers')], results: one };

export const PROTOTYPES: Readonly<Record<string, Prototype>> = {
  // tensor declarations
  external: { params: [p('shape', 'integers')], results: one },
  variable: { params: [p('shape', 'integers'), p('label', 'string')], results: one },
  constant: { params: [p('shape', 'integers'), p('value', 'values')], results: one },
  // shape and layout
  copy: unary,
  reshape: { params: [p('input', 'tensor'), p('shape', 'integers'), p('axis_start', 'integer', 0), p('axis_count', 'integer', -1)], results: one },
  transpose: { params: [p('input', 'tensor'), p('axes', 'integers')], results: one },
  squeeze: { params: [p('input', 'tensor'), p('axes', 'integers')], results: one },
  unsqueeze: { params: [p('input', 'tensor'), p('axes', 'integers')], results: one },
  concat: { params: [p('values', 'tensors'), p('axis', 'integer')], results: one },
  split: { params: [p('value', 'tensor'), p('axis', 'integer'), p('ratios', 'integers')], results: ['tensors'] },
  stack: { params: [p('values', 'tensors'), p('axis', 'integer')], results: one },
  unstack: { params: [p('value', 'tensor'), p('axis', 'integer')], results: ['tensors'] },
  slice: { params: [p('input', 'tensor'), p('axes', 'integers'), p('begin', 'integers'), p('end', 'integers'), p('stride', 'integers', [])], results: one },
  pad: { params: [p('input', 'tensor'), p('padding', 'pairs'), p('border', 'string', 'constant'), p('value', 'scalar', 0)], results: one },
  // element-wise
  add: binary,
  sub: binary,
  mul: binary,
  div: binary,
  pow: binary,
  min: binary,
  max: binary,
  lt: binary,
  gt: binary,
  le: binary,
  ge: binary,
  eq: binary,
  ne: binary,
  and: binary,
  or: binary,
  not: unary,
  select: { params: [p('condition', 'tensor'), p('true_value', 'tensor'), p('false_value', 'tensor')], results: one },
  clamp: { params: [p('x', 'tensor'), p('a', 'tensor'), p('b', 'tensor')], results: one },
  neg: unary,
  rcp: unary,
  exp: unary,
  log: unary,
  log2: unary,
  sin: unary,
  cos: unary,
  abs: unary,
  sign: unary,
  sqr: unary,
  sqrt: unary,
  rsqr: unary,
  rsqrt: unary,
  add_n: { params: [p('x', 'tensors')], results: one },
  // activations
  relu: unary,
  sigmoid: unary,
  tanh: unary,
  elu: { params: [p('x', 'tensor'), p('alpha', 'scalar', 1)], results: one },
  selu: { params: [p('x', 'tensor'), p('alpha', 'scalar', 1.67326319), p('lambda', 'scalar', 1.05070102)], results: one },
  gelu: unary,
  silu: unary,
  softplus: unary,
  prelu: { params: [p('x', 'tensor'), p('alpha', 'tensor')], results: one },
  leaky_relu: { params: [p('x', 'tensor'), p('alpha', 'scalar')], results: one },
  softmax: { params: [p('x', 'tensor'), p('axes', 'integers', [1])], results: one },
  // sliding windows
  conv: { params: [p('input', 'tensor'), p('filter', 'tensor'), p('bias', 'tensor', 0), ...windowParams, p('groups', 'integer', 1)], results: one },
  deconv: {
    params: [p('input', 'tensor'), p('filter', 'tensor'), p('bias', 'tensor', 0), ...windowParams, p('output_shape', 'integers', []), p('groups', 'integer', 1)],
    results: one,
  },
  box: { params: [p('input', 'tensor'), p('size', 'integers'), ...windowParams, p('normalize', 'logical', false)], results: one },
  max_pool: pool,
  avg_pool: pool,
  // normalization
  batch_normalization: {
    params: [p('input', 'tensor'), p('mean', 'tensor'), p('variance', 'tensor'), p('offset', 'tensor', 0), p('scale', 'tensor', 1), p('epsilon', 'scalar', 0)],
    results: one,
  },
  // reductions
  sum_reduce: { params: [p('input', 'tensor'), p('axes', 'integers'), p('normalize', 'logical', false)], results: one },
  mean_reduce: reduce,
  max_reduce: reduce,
  min_reduce: reduce,
  moments: { params: [p('input', 'tensor'), p('axes', 'integers')], results: ['tensor', 'tensor'] },
  // products
  matmul: { params: [p('A', 'tensor'), p('B', 'tensor'), p('transposeA', 'logical', false), p('transposeB', 'logical', false)], results: one },
  linear: { params: [p('input', 'tensor'), p('filter', 'tensor'), p('bias', 'tensor', 0)], results: one },
};

/** The rest of NNEF 1.0's standard operations: known, not implemented by this frontend. */
export const UNSUPPORTED_STANDARD_OPS = new Set([
  'update', 'tile', 'gather', 'cast', 'tan', 'asin', 'acos', 'atan', 'sinh', 'cosh', 'asinh', 'acosh', 'atanh', 'floor', 'ceil',
  'round', 'softabs', 'debox', 'sample', 'desample', 'argmax_pool', 'max_pool_with_index', 'rms_pool', 'separable_conv',
  'separable_deconv', 'nearest_downsample', 'nearest_upsample', 'area_downsample', 'multilinear_upsample',
  'local_response_normalization', 'local_mean_normalization', 'local_variance_normalization', 'local_contrast_normalization',
  'l1_normalization', 'l2_normalization', 'argmax_reduce', 'argmin_reduce', 'any_reduce', 'all_reduce', 'max_roi_pool',
  'avg_roi_pool', 'roi_resample', 'max_roi_align', 'avg_roi_align', 'copy_n', 'min_max_linear_quantize',
  'zero_point_linear_quantize', 'linear_quantize', 'logarithmic_quantize',
]);

/** The operations a graph may use, sorted (external, variable and constant among them). */
export const SUPPORTED_OPERATIONS = Object.keys(PROTOTYPES).sort();
