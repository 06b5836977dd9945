// The type-check worker, started by typecheck.ts: checks one model file and posts its
// errors. Built to dist/typecheck-worker.mjs beside the CLI bundle.
import { parentPort, workerData } from 'node:worker_threads';
import { toMessage, typeCheckModel, type TypeCheckAnswer } from './typecheck';

const { absFile, apiFile } = workerData as { absFile: string; apiFile: string };
let answer: TypeCheckAnswer;
try {
  answer = { errors: (await typeCheckModel(absFile, apiFile)).map(toMessage) };
} catch (error) {
  answer = { failed: String(error) };
}
parentPort!.postMessage(answer);
