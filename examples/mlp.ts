// A two-layer perceptron for MNIST-sized inputs: batch 4, 784 → 128 (ReLU) → 10.
//
//   mnc compile examples/mlp.ts && mnc run mlp.mnplan --random
import { model } from 'mnc';

export const mlp = model(
  (g) => {
    const x = g.input('x', [4, 784]);
    const h = g.relu(g.biasAdd(g.matmul(x, g.parameter('w1', [784, 128])), g.parameter('b1', [128])));
    const logits = g.biasAdd(g.matmul(h, g.parameter('w2', [128, 10])), g.parameter('b2', [10]));
    return { probs: g.softmax(logits), logits };
  },
  { description: 'MNIST MLP, 784-128-10, batch 4' },
);
