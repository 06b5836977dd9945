// The MNIST classifier of meganeura's README: 784 → 128 (ReLU) → 10, batch 32, trained with
// cross-entropy and Adam. The plan gets two entry points: 'run' (x → logits) and
// 'train_step' (x, labels → loss, with the Adam update applied on the GPU).
//
//   mnc compile examples/mnist/model.ts -o mnist.mnplan
import { model } from 'mnc';

export const BATCH = 32;

export const mnist = model(
  (g) => {
    const x = g.input('x', [BATCH, 784]);
    const labels = g.input('labels', [BATCH], 'i32');
    const h = g.relu(g.biasAdd(g.matmul(x, g.parameter('w1', [784, 128])), g.parameter('b1', [128])));
    const logits = g.biasAdd(g.matmul(h, g.parameter('w2', [128, 10])), g.parameter('b2', [10]));
    return { logits, loss: g.crossEntropy(logits, labels) };
  },
  {
    description: 'MNIST MLP, 784-128-10, batch 32, cross-entropy, Adam',
    train: { loss: 'loss', optimizer: { kind: 'adam', lr: 1e-3 } },
  },
);
