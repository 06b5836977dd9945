// Weight storage: the f32 parameters that only products and embedding gathers read, held as
// f16 or bf16 instead and read in-kernel (matmulQuantized, embedding's 16-bit table), which
// halves the bytes a decoded token moves. A compile option, not part of the model: the graph
// says what is computed, this how its weights are held (CompileOptions.weightStorage).
import { f32ToBf16Bits, f32ToF16Bits } from '../../runtime/f16';
import { CompileError } from './errors';
import type { Graph, Node } from './graph';
import { GraphCopy } from './rewrite';
import { elementCount } from './types';

export const WEIGHT_STORAGES = ['f32', 'f16', 'bf16'] as const;
export type WeightStorage = (typeof WEIGHT_STORAGES)[number];

/**
 * Unit roundoff of each storage: a stored weight is within this fraction of its f32 value
 * (round to nearest even; f16 for |w| ≥ 2^-14, below which its spacing is 2^-24 absolute).
 */
export const STORAGE_ROUNDOFF: Record<WeightStorage, number> = { f32: 0, f16: 2 ** -11, bf16: 2 ** -8 };

export interface StoredWeights {
  graph: Graph;
  /** the parameters now held as the storage, in graph order */
  stored: string[];
  /** their bytes in f32 and in the storage */
  f32Bytes: number;
  storedBytes: number;
}

/**
 * `graph` with every eligible parameter held as `storage`: an f32 matrix [rows, cols] whose
 * every use is an embedding's table, the right operand of a matmul (x · w: cols a multiple of
 * 4, as matmulQuantized reads four values at a time) or a [1, 0] transpose that only matmuls
 * take as their right operand (x · wᵀ: the layout of a linear layer, [out, in]). Products
 * become matmulQuantized; the transposes go. Other parameters (norms, biases, convolution
 * filters, a matrix some other op reads) stay f32. `values` gives a parameter's f32 initial
 * values to round into the stored bytes; without it the stored parameters start at zero (a
 * plan whose weights are loaded later: Session.loadWeights rounds them the same way).
 */
export function storeWeights(graph: Graph, storage: 'f16' | 'bf16', values?: (node: Node) => Float32Array): StoredWeights {
  const users = new Map<number, { node: Node; operand: number }[]>();
  for (const node of graph.nodes) node.inputs.forEach((input, operand) => users.set(input, [...(users.get(input) ?? []), { node, operand }]));
  const outputs = new Set(graph.outputs.map((o) => o.node));
  const usesOf = (id: number) => users.get(id) ?? [];
  const rightOperand = ({ node, operand }: { node: Node; operand: number }) => node.op === 'matmul' && operand === 1 && node.inputs[0] !== node.inputs[1];
  const eligible = (p: Node): boolean => {
    if (p.op !== 'parameter' || p.type.dtype !== 'f32' || p.type.shape.length !== 2 || outputs.has(p.id) || usesOf(p.id).length === 0) return false;
    const [rows, cols] = p.type.shape;
    return usesOf(p.id).every((use) => {
      if (use.node.op === 'embedding') return use.operand === 0;
      if (rightOperand(use)) return cols % 4 === 0;
      const perm = (use.node.attrs as { perm?: number[] }).perm;
      const transposed = use.node.op === 'transpose' && perm?.[0] === 1 && perm?.[1] === 0;
      return transposed && rows > 0 && cols % 4 === 0 && !outputs.has(use.node.id) && usesOf(use.node.id).length > 0 && usesOf(use.node.id).every(rightOperand);
    });
  };
  const chosen = new Set(graph.nodes.filter(eligible).map((n) => n.id));
  // a transpose of a stored weight is read by the products that replace its matmuls
  const transposedFrom = new Map<number, number>();
  for (const id of chosen) for (const { node } of usesOf(id)) if (node.op === 'transpose') transposedFrom.set(node.id, id);

  const copy = new GraphCopy(graph);
  const round = storage === 'f16' ? f32ToF16Bits : f32ToBf16Bits;
  let f32Bytes = 0;
  let storedBytes = 0;
  for (const node of graph.nodes) {
    if (chosen.has(node.id)) {
      const n = elementCount(node.type.shape);
      let bytes: Uint8Array | undefined;
      if (values) {
        const v = values(node);
        const bits = new Uint16Array(n);
        for (let i = 0; i < n; i++) bits[i] = round(v[i]);
        bytes = new Uint8Array(bits.buffer);
      }
      f32Bytes += 4 * n;
      storedBytes += 2 * n;
      copy.set(node.id, copy.target.at(node.loc, () => copy.target.packedParameter(node.name, node.type.shape, storage, bytes)));
    } else if (transposedFrom.has(node.id)) {
      continue;
    } else if (node.op === 'matmul' && (chosen.has(node.inputs[1]) || transposedFrom.has(node.inputs[1]))) {
      const transposeB = transposedFrom.has(node.inputs[1]);
      const w = copy.of(transposeB ? transposedFrom.get(node.inputs[1])! : node.inputs[1]);
      copy.set(node.id, copy.emit('matmulQuantized', [copy.of(node.inputs[0]), w], { transposeB }, node.loc));
    } else {
      copy.copy(node.id);
    }
  }
  const stored = graph.nodes.filter((n) => chosen.has(n.id)).map((n) => n.name);
  return { graph: copy.finish().graph, stored, f32Bytes, storedBytes };
}

/** Refuses a storage the compile cannot honour, naming the option. */
export function checkWeightStorage(storage: unknown, training: boolean): WeightStorage {
  if (!(WEIGHT_STORAGES as readonly unknown[]).includes(storage)) throw new CompileError('input', `weight storage must be one of ${WEIGHT_STORAGES.join(', ')}; got ${JSON.stringify(storage)}`);
  if (storage !== 'f32' && training) {
    throw new CompileError('input', `weight storage ${storage} is for inference plans: weights held as ${storage} are not trained (compile the training plan with f32 storage, or pass --inference)`);
  }
  return storage as WeightStorage;
}
