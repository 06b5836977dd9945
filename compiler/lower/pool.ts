// Window archetype: pooling and its gradients, one invocation per result element looping over
// the taps of its window (the pooled value) or over the windows that read it (the gradient,
// gathered, so no two invocations write one element). The windows are a depthwise
// convolution's (ir/ops.ts poolGeometry): taps in the padding are skipped.
import { attrsOf } from '../ir/graph';
import { poolGeometry, type AvgPool2dAttrs, type ConvGeometry, type PoolRole } from '../ir/ops';
import { elementCount, type TensorType } from '../ir/types';
import { bindingDecls, kernelHeader, linearGrid, u32, type KernelSubject, type LoweredKernel } from './kernel';
import { elementwiseShell, linearKernel, WORKGROUP } from './pointwise';

/** Loops over a window's taps at output (oh, ow), skipping the padding; `body` sees ih, iw (i32, inside the input). */
function overTaps(g: ConvGeometry, body: string[]): string[] {
  const [sh, sw] = g.stride;
  const [pt, pl] = g.padding;
  const [dh, dw] = g.dilation;
  return [
    `for (var kh = 0u; kh < ${u32(g.kh)}; kh++) {`,
    `  let ih = i32(oh * ${u32(sh)} + kh * ${u32(dh)}) - ${pt};`,
    `  if (ih < 0 || ih >= ${g.h}) {`,
    '    continue;',
    '  }',
    `  for (var kw = 0u; kw < ${u32(g.kw)}; kw++) {`,
    `    let iw = i32(ow * ${u32(sw)} + kw * ${u32(dw)}) - ${pl};`,
    `    if (iw < 0 || iw >= ${g.w}) {`,
    '      continue;',
    '    }',
    ...body.map((l) => `    ${l}`),
    '  }',
    '}',
  ];
}

/** Loops over the windows (oh, ow) whose taps read input (ih, iw) (u32), each once; `body` sees oh, ow (u32). */
function overWindows(g: ConvGeometry, body: string[]): string[] {
  const [sh, sw] = g.stride;
  const [pt, pl] = g.padding;
  const [dh, dw] = g.dilation;
  const axis = (name: string, input: string, tap: string, stride: number, dilation: number, pad: number, size: number) => [
    `let ${name}_at = i32(${input}) + ${pad} - i32(${tap} * ${u32(dilation)});`,
    `if (${name}_at < 0${stride > 1 ? ` || ${name}_at % ${stride} != 0` : ''} || ${name}_at / ${stride} >= ${size}) {`,
    '  continue;',
    '}',
    `let ${name} = u32(${name}_at / ${stride});`,
  ];
  return [
    `for (var kh = 0u; kh < ${u32(g.kh)}; kh++) {`,
    ...axis('oh', 'ih', 'kh', sh, dh, pt, g.oh).map((l) => `  ${l}`),
    `  for (var kw = 0u; kw < ${u32(g.kw)}; kw++) {`,
    ...axis('ow', 'iw', 'kw', sw, dw, pl, g.ow).map((l) => `    ${l}`),
    ...body.map((l) => `    ${l}`),
    '  }',
    '}',
  ];
}

const inputIndex = (g: ConvGeometry) => `(nc * ${u32(g.h)} + u32(ih)) * ${u32(g.w)} + u32(iw)`;

/** WGSL helpers: a window's first maximal tap of x (in1) as a flat index, and its taps inside the input. */
function windowFunctions(g: ConvGeometry, role: PoolRole, countIncludePad: boolean): string[] {
  const fns: string[] = [];
  if (role === 'maxBackward' || role === 'argmax') {
    fns.push(
      [
        '// the first maximal element of window (oh, ow) in tap order, where max pooling routes its dy',
        'fn first_max(nc: u32, oh: u32, ow: u32) -> u32 {',
        '  var best = 0.0;',
        '  var at = 0xffffffffu;',
        ...overTaps(g, [`let index = ${inputIndex(g)};`, `let v = ${role === 'argmax' ? 'in0' : 'in1'}[index];`, 'if (at == 0xffffffffu || v > best) {', '  best = v;', '  at = index;', '}']).map((l) => `  ${l}`),
        '  return at;',
        '}',
      ].join('\n'),
    );
  }
  if ((role === 'avg' || role === 'avgBackward') && !countIncludePad) {
    fns.push(['// the divisor of window (oh, ow): its taps inside the input', 'fn taps_inside(oh: u32, ow: u32) -> f32 {', '  var count = 0.0;', ...overTaps(g, ['count += 1.0;']).map((l) => `  ${l}`), '  return count;', '}'].join('\n'));
  }
  return fns;
}

export function lowerPool(node: KernelSubject, operands: readonly TensorType[], name: string, role: PoolRole): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const attrs = attrsOf(node, 'maxPool2d', 'maxPool2dIndices', 'avgPool2d', 'maxPool2dBackward', 'avgPool2dBackward');
  const input = role === 'maxBackward' ? operands[1] : role === 'avgBackward' ? node.type : operands[0];
  const g = poolGeometry(input.shape, attrs);
  // max pooling has no divisor
  const countIncludePad = (attrs as Partial<AvgPool2dAttrs>).countIncludePad ?? true;
  const divisor = countIncludePad ? `${g.kh * g.kw}.0` : 'taps_inside(oh, ow)';
  const dyIndex = `(nc * ${u32(g.oh)} + oh) * ${u32(g.ow)} + ow`;
  let body: string[];
  if (role === 'argmax') {
    body = [`let ow = i % ${u32(g.ow)};`, `let oh = (i / ${u32(g.ow)}) % ${u32(g.oh)};`, `let nc = i / ${u32(g.oh * g.ow)};`, 'out[i] = i32(first_max(nc, oh, ow));'];
  } else if (role === 'max' || role === 'avg') {
    body = [
      `let ow = i % ${u32(g.ow)};`,
      `let oh = (i / ${u32(g.ow)}) % ${u32(g.oh)};`,
      `let nc = i / ${u32(g.oh * g.ow)};`,
      // every window holds an input element (the shape rule bounds the padding)
      role === 'max' ? 'var value = -3.4028234663852886e38;' : 'var value = 0.0;',
      ...overTaps(g, [role === 'max' ? `value = max(value, in0[${inputIndex(g)}]);` : `value += in0[${inputIndex(g)}];`]),
      role === 'max' ? 'out[i] = value;' : `out[i] = value / ${divisor};`,
    ];
  } else {
    body = [
      `let iw = i % ${u32(g.w)};`,
      `let ih = (i / ${u32(g.w)}) % ${u32(g.h)};`,
      `let nc = i / ${u32(g.h * g.w)};`,
      'var total = 0.0;',
      ...overWindows(g, role === 'maxBackward' ? ['if (first_max(nc, oh, ow) == i) {', `  total += in0[${dyIndex}];`, '}'] : [`total += in0[${dyIndex}] / ${divisor};`]),
      'out[i] = total;',
    ];
  }
  const total = elementCount(node.type.shape);
  const { grid, gridX } = linearGrid(Math.ceil(total / WORKGROUP));
  const { wgsl: decls, bindings } = bindingDecls(operands, undefined, node.type.dtype);
  const window = `${g.kh}×${g.kw} window, stride ${g.stride.join('×')}, padding ${g.padding.join(', ')}, dilation ${g.dilation.join('×')}`;
  const header = kernelHeader(name, node, operands, `window (${role === 'maxBackward' || role === 'avgBackward' ? 'windows per input, gathered' : 'taps per output'}), ${window}`);
  const wgsl = elementwiseShell(header, decls, windowFunctions(g, role, countIncludePad), total, gridX, body.map((l) => `  ${l}`).join('\n'));
  return linearKernel(name, [node.op], wgsl, bindings, grid);
}
