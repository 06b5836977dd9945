// Scatter-add archetype: embeddingBackward, dy's rows [N, row] added into a [V, row] gradient
// at the rows N ids name, without float atomics (WebGPU has none) and in a fixed order, so a
// training step gives the same bits every run. Two dispatches, a lowering decision:
//
//   links  i32 [V + N]: first[v] = the first position n with ids[n] naming row v, else -1;
//          next[n] = the next position m > n naming the same row, else -1
//          (an invocation per row or id, each scanning the ids until its match)
//   sum    an invocation per gradient element (v, c): dy[n, c] summed along v's chain
//          first[v] → next[…] → …, in ascending n; rows no id names cost one read and a zero
//
// Work: V·N + N²/2 id comparisons for the links (reads of a few KiB every invocation shares),
// then V·row writes, which any form of this gradient must make. A kernel per gradient element
// scanning all ids instead makes V·row·N comparisons (SmolLM2's 49152 × 576 table at 128
// tokens: 3.6·10⁹, against 6.3·10⁶ here); the one-hot product it replaces made 2·V·row·N FLOPs.
// Measured on llvmpipe (the 2-core build machine, shared), V 49152, row 576, distinct ids,
// each dispatch alone (median of 3): N 128, links 41 ms and sum 294 ms, where the one-hot
// product took 13.1 s (its matmul; oneHot and the transpose 136 ms more); N 1024, links 356 ms
// and sum 585 ms. The links' V·N scan is what grows with N: workgroup tiles of the ids in
// shared memory would cut its reads when a batch holds thousands of tokens.
import { attrsOf, type Graph, type Node } from '../ir/graph';
import { opDef, tableRowFunction } from '../ir/ops';
import { elementCount, type TensorType } from '../ir/types';
import type { BindingDesc } from '../../schemas/manifest';
import { bindingDecls, kernelHeader, linearGrid, u32, type KernelSubject, type NodeSchedule } from './kernel';
import { elementwiseShell, linearKernel, WORKGROUP } from './pointwise';

/** The two-step schedule of a scatter-add node (`${name}.links`, then the sums); undefined for other ops. */
export function scatterAddSteps(graph: Graph, node: Node): NodeSchedule | undefined {
  if (opDef(node.op).lowering.archetype !== 'scatterAdd') return undefined;
  const { rows, fromEnd } = attrsOf(node, 'embeddingBackward');
  const [dyNode, idsNode] = node.inputs;
  const [dy, ids] = [graph.nodes[dyNode].type, graph.nodes[idsNode].type];
  const count = elementCount(ids.shape);
  const row = elementCount(node.type.shape.slice(1));
  const links: TensorType = { shape: [rows + count], dtype: 'i32' };
  const linksStep: KernelSubject = { op: 'embeddingBackwardLinks', name: `${node.name}.links`, type: links, attrs: node.attrs };
  return {
    scratch: [links],
    steps: [
      { subject: linksStep, operands: [{ node: idsNode }], operandTypes: [ids], result: { scratch: 0 }, generate: (name) => linksKernel(linksStep, ids, name, rows, fromEnd) },
      { subject: node, operands: [{ node: dyNode }, { scratch: 0 }], operandTypes: [dy, links], result: 'node', generate: (name) => sumKernel(node, [dy, links], name, rows, row) },
    ],
  };
}

function linksKernel(subject: KernelSubject, ids: TensorType, name: string, rows: number, fromEnd: boolean) {
  const count = elementCount(ids.shape);
  const total = rows + count;
  const { grid, gridX } = linearGrid(Math.ceil(total / WORKGROUP));
  const type = ids.dtype === 'u32' ? 'u32' : 'i32';
  const decls = [`@group(0) @binding(0) var<storage, read> in0: array<${type}>;`, '@group(0) @binding(1) var<storage, read_write> out: array<i32>;'].join('\n');
  const bindings: BindingDesc[] = [
    { binding: 0, access: 'read' },
    { binding: 1, access: 'read_write' },
  ];
  const body = [
    `if (i < ${u32(rows)}) {`,
    '  // first[i]: the first id naming row i',
    '  var found = -1;',
    `  for (var n = 0u; n < ${u32(count)}; n++) {`,
    '    if (table_row(in0[n]) == i32(i)) {',
    '      found = i32(n);',
    '      break;',
    '    }',
    '  }',
    '  out[i] = found;',
    '  return;',
    '}',
    '// next[n]: the next id naming the same row as id n',
    `let n = i - ${u32(rows)};`,
    'let r = table_row(in0[n]);',
    'var found = -1;',
    'if (r >= 0) {',
    `  for (var m = n + 1u; m < ${u32(count)}; m++) {`,
    '    if (table_row(in0[m]) == r) {',
    '      found = i32(m);',
    '      break;',
    '    }',
    '  }',
    '}',
    'out[i] = found;',
  ];
  const header = kernelHeader(name, subject, [ids], `scatter-add links: first id per row of ${rows}, next id per id of ${count}`);
  const wgsl = elementwiseShell(header, decls, [tableRowFunction(ids, rows, fromEnd)], total, gridX, body.map((l) => `  ${l}`).join('\n'));
  return linearKernel(name, [subject.op], wgsl, bindings, grid);
}

function sumKernel(subject: KernelSubject, operands: readonly TensorType[], name: string, rows: number, row: number) {
  const total = rows * row;
  const { grid, gridX } = linearGrid(Math.ceil(total / WORKGROUP));
  const { wgsl: decls, bindings } = bindingDecls(operands);
  const body = [
    // ascending positions: the same order, so the same sum, every run
    'var total = 0.0;',
    `for (var n = in1[i / ${u32(row)}]; n >= 0; n = in1[${u32(rows)} + u32(n)]) {`,
    `  total += in0[u32(n) * ${u32(row)} + i % ${u32(row)}];`,
    '}',
    'out[i] = total;',
  ];
  const header = kernelHeader(name, subject, operands, `scatter-add sums: dy's rows along each table row's chain of ids, ${rows} rows of ${row}`);
  const wgsl = elementwiseShell(header, decls, [], total, gridX, body.map((l) => `  ${l}`).join('\n'));
  return linearKernel(name, [subject.op], wgsl, bindings, grid);
}
