// Axis archetype: reductions and row-wise normalisations. A row is all elements along the
// axis for one position of the others; each row is owned by a team of invocations that
// reduce their partial results through a shared-memory tree, and the output is either one
// value per row or one per element. Rows along a middle axis are read with a stride, so no
// transpose is needed. How rows map onto invocations (axisLayout) depends on their shape:
//   - rows along the last axis: a team of neighbouring invocations per row (several rows
//     per workgroup when rows are short), reading vec4s when the row length allows;
//   - rows along an earlier axis whose elements lie INNER ≥ 32 apart: teams interleaved, so
//     that neighbouring invocations read neighbouring rows and loads stay coalesced; a
//     single reduction with INNER a multiple of 4 reads four neighbouring rows as one vec4;
//   - a row that fits in registers is read once, however many passes the program makes
//     (softmax, norms); a longer row streams from memory in each pass, unless a variant
//     with more invocations per workgroup (same grid) holds it, for devices that allow it.
// Reductions with too few rows to fill the GPU are split in two by split-reductions.ts;
// splitChunks here says into how many chunks, from the same layout.
import { axisSplit, type AxisProgram, type AxisReduction } from '../ir/ops';
import { elementCount, type Shape, type TensorType } from '../ir/types';
import type { AxisTuning } from '../target/tuning';
import { kernelHeader, kernelWithVariants, linearGrid, u32, type KernelSubject, type LoweredKernel } from './kernel';
import { typedBindingDecls, type Access } from './vector';

// exactly -FLT_MAX: a decimal that rounds to it is still refused by Tint as out of range
const LOWEST_F32 = '-0x1.fffffep+127f';

/** Invocations per workgroup of the portable kernel: WebGPU's compatibility limit, so it runs everywhere. */
const WORKGROUP = 256;
/** Largest fan-in of one level of the shared-memory tree (256 → 32 → 4 → 1: three barriers). */
const TREE_FAN_IN = 8;
const LANES = ['x', 'y', 'z', 'w'];

/** How rows are spread over invocations; see the file header. */
export interface AxisLayout {
  /** invocations per workgroup */
  workgroup: number;
  /** what the four lanes of a vec4 hold: neighbouring elements of a row, or neighbouring rows; or no vec4s */
  lanes: 'elements' | 'rows' | 'none';
  /** units (vec4s or elements) along a row */
  units: number;
  /** invocations per slot (a power of two); a slot is one row, or four with lanes 'rows' */
  team: number;
  /** slots per workgroup: team × slotsPerGroup = workgroup */
  slotsPerGroup: number;
  /** teams interleaved: invocation lid serves slot lid % slotsPerGroup, else slot lid / team */
  interleaved: boolean;
  /** units each invocation holds in registers (the row is read once), or 0: it streams */
  registers: number;
}

const nextPow2 = (v: number) => 2 ** Math.ceil(Math.log2(Math.max(1, v)));

/**
 * The layout of rows of `n` elements INNER apart (INNER = 1: contiguous) in workgroups of
 * `workgroup` invocations, each holding at most `registerFloats` row values.
 */
export function axisLayout(
  n: number,
  inner: number,
  program: Pick<AxisProgram, 'reductions' | 'output'>,
  extraLengths: readonly number[],
  tuning: AxisTuning,
  workgroup = WORKGROUP,
  registerFloats = tuning.maxRegisterFloats,
): AxisLayout {
  const interleaved = inner >= 32;
  if (interleaved) {
    const quads = inner % 4 === 0 && program.reductions.length === 1 && program.output.per === 'row';
    const slotsPerGroup = Math.max(1, Math.min(workgroup, tuning.interleavedBytes / (quads ? 16 : 4)));
    const team = Math.min(workgroup / slotsPerGroup, nextPow2(Math.ceil(n / tuning.unitsPerInvocation)));
    return { workgroup, lanes: quads ? 'rows' : 'none', units: n, team, slotsPerGroup: workgroup / team, interleaved, registers: 0 };
  }
  const vec4 = inner === 1 && n % 4 === 0 && extraLengths.every((l) => l % 4 === 0);
  const width = vec4 ? 4 : 1;
  const units = n / width;
  const team = Math.min(workgroup, nextPow2(Math.ceil(units / tuning.unitsPerInvocation)));
  const perInvocation = Math.ceil(units / team);
  const registers = perInvocation * width <= registerFloats ? perInvocation : 0;
  return { workgroup, lanes: vec4 ? 'elements' : 'none', units, team, slotsPerGroup: workgroup / team, interleaved: false, registers };
}

/** Workgroups the kernel of `rows` rows takes with `layout` (before any batching). */
function groupsOf(layout: AxisLayout, rows: number): number {
  const slots = layout.lanes === 'rows' ? rows / 4 : rows;
  return Math.ceil(slots / layout.slotsPerGroup);
}

/**
 * Into how many chunks a single reduction over `shape` should split its axis (two steps:
 * partial results per chunk, then their reduction), or undefined. It splits when its one
 * kernel would run fewer than splitBelowWorkgroups over at least splitMinElements, into a
 * divisor of the axis length that at least doubles the workgroups.
 */
export function splitChunks(shape: Shape, program: Pick<AxisProgram, 'axis' | 'reductions' | 'output'>, tuning: AxisTuning): number | undefined {
  if (program.reductions.length !== 1 || program.output.per !== 'row') return undefined;
  if (elementCount(shape) < tuning.splitMinElements) return undefined;
  const { outer, n, inner } = axisSplit(shape, program.axis);
  // the first step reduces outer·chunks rows of n / chunks; the layout decides its workgroups
  const groups = (chunks: number) => groupsOf(axisLayout(n / chunks, inner, program, [], tuning), outer * chunks * inner);
  const single = groups(1);
  if (single >= tuning.splitBelowWorkgroups) return undefined;
  // the fewest chunks that reach the target, else that give the most workgroups (once short
  // rows share workgroups, more chunks add none and only lengthen the second step)
  let chosen: number | undefined;
  let most = 0;
  for (let chunks = 2; n / chunks >= tuning.splitMinChunk; chunks++) {
    if (n % chunks !== 0) continue;
    // chunks of a multiple of 4 keep vec4 loads where the whole row had them
    if (inner === 1 && n % 4 === 0 && (n / chunks) % 4 !== 0) continue;
    const g = groups(chunks);
    if (g > most) [chosen, most] = [chunks, g];
    if (g >= tuning.splitTargetWorkgroups) break;
  }
  return chosen !== undefined && most >= 2 * single ? chosen : undefined;
}

const combineOf = (r: AxisReduction) => (a: string, b: string) => (r.combine === 'add' ? `${a} + ${b}` : `max(${a}, ${b})`);

/** `acc` with one unit `x` folded in: a scalar, the four elements of a vec4, or four rows' lanes (a vec4 acc). */
function fold(r: AxisReduction, acc: string, x: string, lanes: AxisLayout['lanes']): string {
  const combine = combineOf(r);
  if (lanes === 'none') return combine(acc, r.term(x));
  const terms = LANES.map((l) => r.term(`${x}.${l}`));
  if (lanes === 'rows') return combine(acc, `vec4<f32>(${terms.join(', ')})`);
  const pair = (a: string, b: string) => (r.combine === 'add' ? `(${a} + ${b})` : `max(${a}, ${b})`);
  return combine(acc, combine(pair(terms[0], terms[1]), pair(terms[2], terms[3])));
}

/** How many workgroups a kernel runs and how it finds its rows; every variant of a kernel shares it. */
interface AxisGrid {
  /** row groups (slotsPerGroup slots each) */
  groups: number;
  /** the grid holds fewer workgroups than groups, each taking groups in turn (tuning.streamGroups) */
  batched: boolean;
  grid: [number, number, number];
  gridX: number;
}

export function lowerAxis(node: KernelSubject, operands: readonly TensorType[], name: string, program: AxisProgram, tuning: AxisTuning): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const { outer, n, inner } = axisSplit(operands[0].shape, program.axis);
  const rows = outer * inner;
  const extraLengths = operands.slice(1).map((t) => elementCount(t.shape));
  const passes = program.reductions.length + (program.output.per === 'element' ? 1 : 0);
  const layout = axisLayout(n, inner, program, extraLengths, tuning);
  const groups = groupsOf(layout, rows);
  // a multi-pass stream takes its rows in batches that stay in L2 between passes
  const batched = layout.registers === 0 && passes > 1 && tuning.streamGroups > 0 && groups > tuning.streamGroups;
  const plan: AxisGrid = batched ? { groups, batched, grid: [tuning.streamGroups, 1, 1], gridX: tuning.streamGroups } : { groups, batched, ...linearGrid(groups) };
  const portable = axisSource(node, operands, name, program, layout, plan, tuning);

  // a row streamed more than once fits in the registers of a larger workgroup: a team per
  // row either way (the stream's team fills the portable workgroup), so the grid is the same
  const streamed = layout.registers === 0 && passes > 1 && !layout.interleaved;
  const large = streamed && tuning.largeInvocations > WORKGROUP ? axisLayout(n, inner, program, extraLengths, tuning, tuning.largeInvocations, tuning.largeRegisterFloats) : undefined;
  const variants =
    large && large.registers > 0 && large.slotsPerGroup === layout.slotsPerGroup
      ? [{ tag: 'large', features: [], code: axisSource(node, operands, name, program, large, plan, tuning) }]
      : [];
  return kernelWithVariants(name, [node.op], portable.bindings, portable, variants);
}

/** The module for one layout of the program's rows, dispatched on `plan`'s grid. */
function axisSource(node: KernelSubject, operands: readonly TensorType[], name: string, program: AxisProgram, layout: AxisLayout, plan: AxisGrid, tuning: AxisTuning) {
  const { outer, n, inner } = axisSplit(operands[0].shape, program.axis);
  const rows = outer * inner;
  const perElement = program.output.per === 'element';
  const extras = operands.slice(1);
  const { workgroup, lanes, team, slotsPerGroup, interleaved, registers } = layout;
  const { groups, batched, gridX } = plan;
  const quads = lanes === 'rows';
  const slots = quads ? rows / 4 : rows;
  const passes = program.reductions.length + (perElement ? 1 : 0);
  const unit = lanes === 'none' ? 'f32' : 'vec4<f32>';
  const accType = quads ? 'vec4<f32>' : 'f32';
  // unit j of the row: contiguous rows are indexed in units from `base`, strided rows step by INNER (in vec4s: INNER / 4)
  const at = (j: string) => (inner === 1 ? `base + ${j}` : `base + ${j} * ${quads ? 'INNER_VEC4S' : 'INNER'}`);
  // scratch distance between neighbouring members of a team
  const step = interleaved ? slotsPerGroup : 1;
  const guardUnits = registers > 0 && registers * team !== layout.units;

  const lines: string[] = [];
  const emit = (...l: string[]) => lines.push(...l);
  /** Statements run for each register k (the loop's index), with unit j of the row. */
  const forEachRegister = (body: (k: string, j: string) => string[], guard: string) => {
    emit(`  for (var k = 0u; k < ${u32(registers)}; k++) {`, '    let j = t + k * TEAM;');
    const inside = body('k', 'j');
    const cond = [guardUnits ? 'j < UNITS' : '', guard].filter(Boolean).join(' && ');
    if (cond) emit(`    if (${cond}) {`, ...inside.map((l) => `      ${l}`), '    }');
    else emit(...inside.map((l) => `    ${l}`));
    emit('  }');
  };

  if (registers > 0) {
    emit(`  // this invocation's units of the row, t + k * TEAM, read once`, `  var v: array<${unit}, ${registers}>;`);
    forEachRegister((k, j) => [`v[${k}] = in0[${at(j)}];`], '');
  }

  // a mean and the squared deviations from it, as one tree where every invocation holds the
  // same number of the row's values: one pass over the registers and half the barriers
  // (H200, layerNorm of 1024 rows of 32768: 77.7 µs against 81.3 for two trees)
  const momentsAt = program.reductions.findIndex(
    (r, k) => k > 0 && r.deviationsFrom === program.reductions[k - 1].name && program.reductions[k - 1].combine === 'add' && registers > 0 && !guardUnits && !quads && team > 1,
  );
  const momentsCode = (mean: AxisReduction, deviations: AxisReduction) => {
    const count = registers * (lanes === 'elements' ? 4 : 1);
    const local = `${mean.name}_local`;
    emit(
      `  // reductions ${mean.name} and ${deviations.name} in one tree: this invocation's mean and squared`,
      `  // deviations over its ${count} values, then pairs merged (equal counts c: the mean of the means,`,
      '  // the sum of the squared deviations plus c·Σ(mean_i - mean)²)',
      `  var ${mean.name}_acc: f32 = 0.0;`,
    );
    forEachRegister((k) => [`${mean.name}_acc = ${fold(mean, `${mean.name}_acc`, `v[${k}]`, lanes)};`], '');
    emit(`  let ${local} = ${mean.name}_acc / ${count}.0;`, `  var ${deviations.name}_acc: f32 = 0.0;`);
    forEachRegister(
      (k) => (lanes === 'elements' ? [`let d = v[${k}] - vec4<f32>(${local});`, `${deviations.name}_acc += dot(d, d);`] : [`let d = v[${k}] - ${local};`, `${deviations.name}_acc += d * d;`]),
      '',
    );
    emit(`  moments[lid] = vec2<f32>(${local}, ${deviations.name}_acc);`, '  workgroupBarrier();');
    let held = count;
    for (let size = team; size > 1; ) {
      const fanIn = Math.min(TREE_FAN_IN, size);
      const part = size / fanIn;
      const parts = Array.from({ length: fanIn }, (_, m) => `p${m}`);
      emit(
        `  if (t < ${u32(part)}) {`,
        ...parts.map((p, m) => `    let ${p} = moments[lid${m ? ` + ${u32(m * part * step)}` : ''}];`),
        `    let mean = (${parts.map((p) => `${p}.x`).join(' + ')}) / ${fanIn}.0;`,
        `    let spread = ${parts.map((p) => `(${p}.x - mean) * (${p}.x - mean)`).join(' + ')};`,
        `    moments[lid] = vec2<f32>(mean, ${parts.map((p) => `${p}.y`).join(' + ')} + ${held}.0 * spread);`,
        '  }',
        '  workgroupBarrier();',
      );
      held *= fanIn;
      size = part;
    }
    emit(`  let ${mean.name} = moments[first].x;`, `  let ${deviations.name}_total = moments[first].y;`);
    emit(`  let ${deviations.name} = ${deviations.finish ? deviations.finish(`${deviations.name}_total`, n) : `${deviations.name}_total`};`);
  };

  program.reductions.forEach((r, k) => {
    if (k === momentsAt - 1) return momentsCode(r, program.reductions[momentsAt]);
    if (k === momentsAt) return;
    const acc = `${r.name}_acc`;
    const start = r.combine === 'add' ? '0.0' : LOWEST_F32;
    const identity = quads ? `vec4<f32>(${start})` : start;
    emit(`  // reduction ${r.name}: ${r.combine}`, `  var ${acc}: ${accType} = ${identity};`);
    if (registers > 0) {
      forEachRegister((k) => [`${acc} = ${fold(r, acc, `v[${k}]`, lanes)};`], '');
    } else {
      // independent accumulators keep that many loads in flight per invocation
      const a = tuning.streamAccumulators;
      const offsets = Array.from({ length: a }, (_, m) => (m === 0 ? 'j' : m === 1 ? '(j + TEAM)' : `(j + ${m}u * TEAM)`));
      const combine = combineOf(r);
      let merged = 'acc0';
      for (let m = 1; m < a; m++) merged = combine(merged, `acc${m}`);
      emit(
        '  {',
        ...offsets.map((_, m) => `    var acc${m}: ${accType} = ${identity};`),
        '    var j = t;',
        `    while (j + ${u32(a - 1)} * TEAM < UNITS) {`,
        ...offsets.map((o, m) => `      let x${m} = in0[${at(o)}];`),
        ...offsets.map((_, m) => `      acc${m} = ${fold(r, `acc${m}`, `x${m}`, lanes)};`),
        `      j += ${u32(a)} * TEAM;`,
        '    }',
        '    while (j < UNITS) {',
        `      let x = in0[${at('j')}];`,
        `      acc0 = ${fold(r, 'acc0', 'x', lanes)};`,
        '      j += TEAM;',
        '    }',
        `    ${acc} = ${merged};`,
        '  }',
      );
    }
    const total = `${r.name}_total`;
    if (team === 1) {
      emit(`  let ${total} = ${acc};`);
    } else {
      // the team's tree in shared memory; two scratch arrays alternate, so reading one
      // reduction's total needs no barrier before the next reduction writes
      const scratch = k % 2 === 0 ? 'scratch' : 'scratch_odd';
      const combine = combineOf(r);
      emit(`  ${scratch}[lid] = ${acc};`, '  workgroupBarrier();');
      for (let size = team; size > 1; ) {
        const fanIn = Math.min(TREE_FAN_IN, size);
        const part = size / fanIn;
        let folded = `${scratch}[lid]`;
        for (let m = 1; m < fanIn; m++) folded = combine(folded, `${scratch}[lid + ${u32(m * part * step)}]`);
        emit(`  if (t < ${u32(part)}) {`, `    ${scratch}[lid] = ${folded};`, '  }', '  workgroupBarrier();');
        size = part;
      }
      emit(`  let ${total} = ${scratch}[first];`);
    }
    if (!quads) emit(`  let ${r.name} = ${r.finish ? r.finish(total, n) : total};`);
  });

  if (program.output.per === 'row') {
    if (quads) {
      // each lane is a row: finish and output per lane, in its own scope
      const [r] = program.reductions;
      const expr = program.output.expr;
      emit('  if (t == 0u && slot < SLOTS) {', '    var result: vec4<f32>;');
      for (const l of LANES) {
        emit(`    { let ${r.name} = ${r.finish ? r.finish(`${r.name}_total.${l}`, n) : `${r.name}_total.${l}`}; result.${l} = ${expr}; }`);
      }
      emit('    out[slot] = result;', '  }');
    } else {
      emit('  if (t == 0u && slot < SLOTS) {', `    out[row] = ${program.output.expr};`, '  }');
    }
  } else {
    const expr = program.output.expr;
    const value = (xs: string) => {
      if (lanes === 'none') return expr(xs, extras.map((_, k) => `e${k + 1}`));
      return `vec4<f32>(${LANES.map((l) => expr(`${xs}.${l}`, extras.map((_, k) => `e${k + 1}.${l}`))).join(', ')})`;
    };
    const store = (source: string, j: string) => [`let x = ${source};`, ...extras.map((_, k) => `let e${k + 1} = in${k + 1}[${j}];`), `out[${at(j)}] = ${value('x')};`];
    if (registers > 0) {
      forEachRegister((k, j) => store(`v[${k}]`, j), 'slot < SLOTS');
    } else {
      emit('  if (slot < SLOTS) {', '    for (var j = t; j < UNITS; j += TEAM) {', ...store(`in0[${at('j')}]`, 'j').map((l) => `      ${l}`), '    }', '  }');
    }
  }

  const treeArrays = program.reductions.map((_, k) => (k === momentsAt - 1 || k === momentsAt ? 'moments' : k % 2 === 0 ? 'scratch' : 'scratch_odd'));
  const scratchDecls =
    team > 1
      ? [
          ...(treeArrays.includes('scratch') ? [`var<workgroup> scratch: array<${accType}, ${workgroup}>;`] : []),
          ...(treeArrays.includes('scratch_odd') ? [`var<workgroup> scratch_odd: array<${accType}, ${workgroup}>;`] : []),
          ...(treeArrays.includes('moments') ? [`var<workgroup> moments: array<vec2<f32>, ${workgroup}>;`] : []),
        ]
      : [];
  const access: Access = lanes === 'none' ? 'scalar' : 'vec4';
  const { wgsl: decls, bindings } = typedBindingDecls(operands, operands.map(() => access), perElement || quads ? access : 'scalar');
  const how = [
    interleaved
      ? `${slotsPerGroup} interleaved ${quads ? 'groups of 4 rows' : 'rows'} per workgroup, ${team} invocations each`
      : `${slotsPerGroup} row(s) per workgroup, ${team} invocations each`,
    quads ? 'vec4 loads of 4 rows' : lanes === 'elements' ? 'vec4 loads' : 'scalar loads',
    registers > 0 ? `row held in registers (${registers} per invocation)` : passes > 1 ? `${passes} passes over memory` : 'one pass',
    ...(batched ? [`${tuning.streamGroups} workgroups taking rows in turn`] : []),
  ].join(', ');
  const header = kernelHeader(name, node, operands, `axis ${program.axis} (${rows} rows of ${n}): ${how}`);
  const slotOf = interleaved
    ? ['  let t = lid / SLOTS_PER_GROUP;', '  let slot = group * SLOTS_PER_GROUP + lid % SLOTS_PER_GROUP;']
    : ['  let t = lid % TEAM;', '  let slot = group * SLOTS_PER_GROUP + lid / TEAM;'];
  const first = team === 1 ? [] : [interleaved ? "  let first = lid % SLOTS_PER_GROUP; // scratch slot of this team's t = 0" : "  let first = lid - t; // scratch slot of this team's t = 0"];
  const row = quads ? '  let row = min(slot, SLOTS - 1u) * 4u; // the first of its four rows' : '  let row = min(slot, SLOTS - 1u);';
  const base =
    inner === 1
      ? lanes === 'elements'
        ? '  let base = row * UNITS;'
        : '  let base = row * N;'
      : quads
        ? '  let base = ((row / INNER) * N * INNER + row % INNER) / 4u;'
        : '  let base = (row / INNER) * N * INNER + row % INNER;';
  const constants = [
    `const ROWS: u32 = ${u32(rows)};`,
    ...(quads ? [`const SLOTS: u32 = ${u32(slots)}; // groups of four rows`] : [`const SLOTS: u32 = ${u32(slots)}; // rows`]),
    `const N: u32 = ${u32(n)};`,
    `const INNER: u32 = ${u32(inner)};`,
    ...(quads ? [`const INNER_VEC4S: u32 = ${u32(inner / 4)};`] : []),
    `const UNITS: u32 = ${u32(layout.units)}; // ${lanes === 'elements' ? 'vec4s' : 'elements'} per row`,
    `const TEAM: u32 = ${u32(team)};`,
    `const SLOTS_PER_GROUP: u32 = ${u32(slotsPerGroup)};`,
    `const GRID_X: u32 = ${u32(gridX)};`,
  ];
  const body = [...slotOf, '  // a team past the last slot reads the last one again (every invocation must reach each barrier) and stores nothing', row, ...first, base, ...lines];
  const main = batched
    ? [
        `  for (var group = wid.x; group < ${u32(groups)}; group += ${u32(tuning.streamGroups)}) {`,
        ...body.map((l) => `  ${l}`),
        '    // the next group writes scratch the last reduction read',
        '    workgroupBarrier();',
        '  }',
      ]
    : ['  let group = wid.x + wid.y * GRID_X;', ...body];
  const wgsl = `${header}
${decls}

${constants.join('\n')}

${scratchDecls.join('\n')}${scratchDecls.length ? '\n\n' : ''}@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${main.join('\n')}
}
`;
  const workgroupBytes = team > 1 ? treeArrays.filter((a, k) => treeArrays.indexOf(a) === k).reduce((bytes, a) => bytes + workgroup * (a === 'moments' ? 8 : quads ? 16 : 4), 0) : 0;
  return { wgsl, bindings, workgroupBytes, workgroupSize: [workgroup, 1, 1] as [number, number, number], workgroups: plan.grid };
}
