// The example page's code: loads the MNIST training plan with the browser runtime, classifies
// digits drawn on the pad (MNIST-style preprocessing: the ink's bounding box scaled to 20×20,
// centred by its centre of mass in 28×28), trains the plan on the real MNIST files with a live
// loss plot and test accuracy per epoch, and exports the trained weights as safetensors; and
// generates text with a language-model plan, streaming tokens, through the text layer, which
// it imports only when asked to generate (a page that classifies never downloads it).
// An app built with a bundler imports the same functions from 'mnc/runtime/browser' and 'mnc/text'.
import { fetchPlan, loadPlan, loadTrainingPlan, requestBrowserDevice } from './mnrt.browser.mjs';

const BATCH = 32;
const PIXELS = 784;
const $ = (id) => document.getElementById(id);

/** mulberry32: a seeded stream in [0, 1), so a run's shuffle repeats. */
function random(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// --- the plan and the device ---------------------------------------------------------------

async function start() {
  const started = performance.now();
  const gpu = await requestBrowserDevice();
  const plan = await fetchPlan('./mnist.mnplan');
  const trainer = await loadTrainingPlan(plan, gpu.device);
  const { adapter } = trainer;
  const name = [adapter.vendor, adapter.architecture, adapter.device, adapter.description].filter(Boolean).join(' / ') || 'unnamed adapter';
  $('adapter').textContent = adapter.fallback
    ? `No GPU: WebGPU runs on a software adapter (${name}). Results are correct, but everything is much slower than on a GPU.`
    : `GPU: ${name}`;
  $('adapter').classList.toggle('fallback', adapter.fallback);
  $('status').textContent = `Plan loaded in ${Math.round(performance.now() - started)} ms (${(plan.length / 1024).toFixed(0)} KiB fetched, target ${trainer.target.name}).`;
  $('export').disabled = false;
  return { gpu, trainer };
}

// --- MNIST files -----------------------------------------------------------------------------

/** An IDX file (big-endian header: magic with the rank in its last byte, then the dims) as its u8 values. */
async function readIdx(name) {
  const response = await fetch(`./data/${name}`);
  if (!response.ok) throw new Error(`./data/${name}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const view = new DataView(bytes.buffer);
  const rank = view.getUint8(3);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i));
  return { dims, values: bytes.subarray(4 + 4 * rank) };
}

let mnist;
function loadMnist() {
  mnist ??= Promise.all(['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'].map(readIdx)).then(
    ([trainImages, trainLabels, testImages, testLabels]) => ({ trainImages, trainLabels, testImages, testLabels }),
  );
  return mnist;
}

function fillBatch(images, labels, indices, x, y) {
  x.fill(0);
  indices.forEach((image, row) => {
    for (let p = 0; p < PIXELS; p++) x[row * PIXELS + p] = images.values[image * PIXELS + p] / 255;
    if (y) y[row] = labels.values[image];
  });
}

const argmax = (values, from, n) => {
  let best = 0;
  for (let i = 1; i < n; i++) if (values[from + i] > values[from + best]) best = i;
  return best;
};

// --- training ---------------------------------------------------------------------------------

const losses = [];
const epochs = [];
let stopping = false;

async function evaluate(trainer, data, limit) {
  const n = Math.min(limit, data.testImages.dims[0]);
  const x = new Float32Array(BATCH * PIXELS);
  let correct = 0;
  for (let at = 0; at < n; at += BATCH) {
    const indices = Array.from({ length: Math.min(BATCH, n - at) }, (_, i) => at + i);
    fillBatch(data.testImages, data.testLabels, indices, x);
    const { logits } = await trainer.run({ x });
    indices.forEach((image, row) => (correct += argmax(logits, row * 10, 10) === data.testLabels.values[image] ? 1 : 0));
  }
  return correct / n;
}

/**
 * Trains `epochs` epochs of at most `steps` steps each (the whole shuffled training set is
 * 1875), then measures test accuracy on the first `testLimit` test images after each epoch.
 */
async function train(app, { epochs: epochCount = 1, steps = 1875, testLimit = 10000, seed = 0 } = {}) {
  const { trainer } = await app;
  const data = await loadMnist();
  const count = data.trainImages.dims[0];
  const next = random(seed + epochs.length);
  stopping = false;
  const from = losses.length;
  for (let e = 0; e < epochCount && !stopping; e++) {
    const order = Array.from({ length: count }, (_, i) => i);
    for (let i = count - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const stepsNow = Math.min(steps, Math.floor(count / BATCH));
    const started = performance.now();
    const before = losses.length;
    for (let s = 0; s < stepsNow && !stopping; s++) {
      const x = new Float32Array(BATCH * PIXELS);
      const labels = new Int32Array(BATCH);
      fillBatch(data.trainImages, data.trainLabels, order.slice(s * BATCH, (s + 1) * BATCH), x, labels);
      losses.push(await trainer.step({ x, labels }));
      if (s % 10 === 9 || s === stepsNow - 1) {
        drawLosses();
        $('train-status').textContent = `epoch ${epochs.length + 1}: step ${s + 1} of ${stepsNow}, loss ${losses.at(-1).toFixed(4)}`;
      }
    }
    const taken = losses.length - before;
    const msPerStep = (performance.now() - started) / Math.max(1, taken);
    $('train-status').textContent = `epoch ${epochs.length + 1}: testing on ${Math.min(testLimit, data.testImages.dims[0])} images…`;
    const accuracy = await evaluate(trainer, data, testLimit);
    const meanLoss = losses.slice(before).reduce((a, b) => a + b, 0) / Math.max(1, taken);
    const epoch = { epoch: epochs.length + 1, steps: taken, meanLoss, accuracy, msPerStep };
    epochs.push(epoch);
    const row = document.createElement('tr');
    row.innerHTML = `<td>${epoch.epoch}</td><td>${taken}</td><td>${meanLoss.toFixed(4)}</td><td>${(accuracy * 100).toFixed(2)}%</td><td>${msPerStep.toFixed(1)}</td>`;
    $('epochs-table').querySelector('tbody').append(row);
    $('train-status').textContent = `epoch ${epoch.epoch}: mean loss ${meanLoss.toFixed(4)}, test accuracy ${(accuracy * 100).toFixed(2)}%`;
  }
  return { losses: losses.slice(from), epochs: epochs.slice(), stepCount: trainer.stepCount };
}

function drawLosses() {
  const canvas = $('loss-plot');
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  const pad = 34;
  ctx.clearRect(0, 0, width, height);
  ctx.font = '11px system-ui';
  ctx.fillStyle = '#666';
  const top = Math.max(2.5, ...losses.slice(0, 5));
  ctx.strokeStyle = '#ddd';
  for (let k = 0; k <= 5; k++) {
    const y = pad / 2 + ((height - pad) * k) / 5;
    ctx.beginPath();
    ctx.moveTo(pad, y);
    ctx.lineTo(width - 4, y);
    ctx.stroke();
    ctx.fillText((top * (1 - k / 5)).toFixed(1), 4, y + 4);
  }
  ctx.fillText(`loss per step (${losses.length} steps)`, pad + 4, height - 6);
  if (losses.length < 2) return;
  // each pixel column: the mean of the steps it covers
  const columns = width - pad - 4;
  const per = Math.max(1, losses.length / columns);
  ctx.strokeStyle = '#3d6fd6';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  for (let c = 0; c * per < losses.length; c++) {
    const chunk = losses.slice(Math.floor(c * per), Math.max(Math.floor((c + 1) * per), Math.floor(c * per) + 1));
    const mean = chunk.reduce((a, b) => a + b, 0) / chunk.length;
    const x = pad + (c * columns) / Math.ceil(losses.length / per);
    const y = pad / 2 + (height - pad) * (1 - Math.min(mean, top) / top);
    if (c === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  }
  ctx.stroke();
}

async function exportWeights(app) {
  const { trainer } = await app;
  const bytes = await trainer.exportState({ optimizer: false });
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  link.download = 'mnist-weights.safetensors';
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

// --- drawing and classifying -----------------------------------------------------------------

/** The pad's ink as MNIST draws digits: bounding box scaled to fit 20×20, centre of mass at (14, 14). */
function preprocess(pad) {
  const { width, height } = pad;
  const ink = pad.getContext('2d').getImageData(0, 0, width, height).data;
  let [x0, y0, x1, y1] = [width, height, -1, -1];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (ink[(y * width + x) * 4] > 25) [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
    }
  }
  const image = new Float32Array(PIXELS);
  if (x1 < 0) return image;
  const [w, h] = [x1 - x0 + 1, y1 - y0 + 1];
  const scale = 20 / Math.max(w, h);
  const small = new OffscreenCanvas(28, 28);
  const ctx = small.getContext('2d', { willReadFrequently: true });
  ctx.imageSmoothingQuality = 'high';
  const [dw, dh] = [w * scale, h * scale];
  ctx.drawImage(pad, x0, y0, w, h, (28 - dw) / 2, (28 - dh) / 2, dw, dh);
  const boxed = ctx.getImageData(0, 0, 28, 28).data;
  let [mass, mx, my] = [0, 0, 0];
  for (let p = 0; p < PIXELS; p++) {
    const v = boxed[p * 4] / 255;
    mass += v;
    mx += v * (p % 28);
    my += v * Math.floor(p / 28);
  }
  const [sx, sy] = [Math.round(13.5 - mx / mass), Math.round(13.5 - my / mass)];
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      const [fx, fy] = [x - sx, y - sy];
      if (fx >= 0 && fx < 28 && fy >= 0 && fy < 28) image[y * 28 + x] = boxed[(fy * 28 + fx) * 4] / 255;
    }
  }
  return image;
}

function showSeen(image) {
  const seen = $('seen').getContext('2d');
  const pixels = new ImageData(28, 28);
  image.forEach((v, p) => pixels.data.set([v * 255, v * 255, v * 255, 255], p * 4));
  const tile = new OffscreenCanvas(28, 28);
  tile.getContext('2d').putImageData(pixels, 0, 0);
  seen.imageSmoothingEnabled = false;
  seen.drawImage(tile, 0, 0, 112, 112);
}

async function classify(app, image) {
  const { trainer } = await app;
  const x = new Float32Array(BATCH * PIXELS);
  x.set(image);
  const { logits } = await trainer.run({ x });
  const row = Array.from(logits.subarray(0, 10));
  const top = Math.max(...row);
  const exp = row.map((v) => Math.exp(v - top));
  const sum = exp.reduce((a, b) => a + b, 0);
  return { digit: argmax(row, 0, 10), probabilities: exp.map((v) => v / sum) };
}

function showPrediction({ digit, probabilities }, strokes) {
  const box = $('prediction');
  box.querySelector('.digit').textContent = String(digit);
  box.querySelector('.bars').innerHTML = probabilities
    .map((p, d) => `<span>${d}</span><span class="bar"><div style="width:${(p * 100).toFixed(1)}%"></div></span><span>${(p * 100).toFixed(1)}%</span>`)
    .join('');
  box.dataset.digit = String(digit);
  box.dataset.strokes = String(strokes);
}

function setUpPad(app) {
  const pad = $('pad');
  const ctx = pad.getContext('2d');
  const clear = () => {
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, pad.width, pad.height);
  };
  clear();
  let last;
  let strokes = 0;
  const point = (event) => {
    const r = pad.getBoundingClientRect();
    return [((event.clientX - r.left) * pad.width) / r.width, ((event.clientY - r.top) * pad.height) / r.height];
  };
  const line = (to) => {
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = Number($('brush').value) || 18;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...to);
    ctx.stroke();
    last = to;
  };
  pad.addEventListener('pointerdown', (event) => {
    pad.setPointerCapture(event.pointerId);
    last = point(event);
    line(last);
  });
  pad.addEventListener('pointermove', (event) => last && line(point(event)));
  pad.addEventListener('pointerup', async () => {
    if (!last) return;
    last = undefined;
    const stroke = ++strokes;
    const image = preprocess(pad);
    showSeen(image);
    const result = await classify(app, image);
    // runs finish in call order, so the last stroke's answer is shown last
    showPrediction(result, stroke);
  });
  $('clear').addEventListener('click', () => {
    clear();
    strokes = 0;
    $('prediction').dataset.strokes = '0';
    $('prediction').querySelector('.digit').textContent = '–';
    $('prediction').querySelector('.bars').innerHTML = '';
  });
}

// --- generating text -------------------------------------------------------------------------

let textModel;
/**
 * The text layer, the tokenizer and the language-model plan, loaded on first use: the text
 * entry is a dynamic import, so the page's classifying and training never fetch it.
 */
function loadTextModel(app) {
  textModel ??= (async () => {
    const started = performance.now();
    const { gpu } = await app;
    const [text, tokenizerJson, tokenizerConfig, plan] = await Promise.all([
      import('./mntext.browser.mjs'),
      fetch('./tokenizer/tokenizer.json').then((r) => r.text()),
      fetch('./tokenizer/tokenizer_config.json').then((r) => r.text()),
      fetchPlan('./llama-tiny.mnplan'),
    ]);
    const tokenizer = text.loadTokenizer({ tokenizer: tokenizerJson, config: tokenizerConfig });
    const session = await loadPlan(plan, gpu.device, { label: 'llama-tiny' });
    const model = text.planLanguageModel(session);
    const loadMs = performance.now() - started;
    return { text, tokenizer, model, loadMs, planBytes: plan.length };
  })();
  textModel.catch(() => (textModel = undefined));
  return textModel;
}

let generating = Promise.resolve();
/**
 * Generates from `prompt`, streaming each token's text into the page; resolves to the token
 * ids and the continuation's text. Generations run one at a time (the plan holds one cache).
 */
function generateText(app, { prompt, maxNewTokens = 12, temperature = 0.8, topP = 0.95, seed = 7 }) {
  const run = generating.then(async () => {
    $('generate-status').textContent = 'Loading the text layer, the tokenizer and the plan…';
    const { text, tokenizer, model, loadMs, planBytes } = await loadTextModel(app);
    const out = $('generated');
    out.querySelector('.prompt').textContent = prompt;
    const continuation = out.querySelector('.continuation');
    continuation.textContent = '';
    out.dataset.tokens = '0';
    const ids = [];
    const started = performance.now();
    let firstMs;
    // sampled unless the temperature is 0 (greedy), as transformers' do_sample
    for await (const step of text.generate(model, prompt, { tokenizer, maxNewTokens, doSample: temperature > 0, temperature, topP, seed })) {
      firstMs ??= performance.now() - started;
      ids.push(step.token);
      continuation.textContent += step.text;
      out.dataset.tokens = String(ids.length);
      $('generate-status').textContent = `${ids.length} of ${maxNewTokens} tokens…`;
    }
    const seconds = (performance.now() - started) / 1000;
    $('generate-status').textContent =
      `${ids.length} tokens in ${seconds.toFixed(2)} s (${(ids.length / seconds).toFixed(1)} tokens/s; first after ${Math.round(firstMs)} ms); ` +
      `text layer, tokenizer and plan (${(planBytes / 1048576).toFixed(1)} MiB) loaded in ${Math.round(loadMs)} ms.`;
    return { ids, text: continuation.textContent };
  });
  generating = run.catch(() => undefined);
  return run;
}

// --- wiring ---------------------------------------------------------------------------------------

const app = start();
app.catch((error) => {
  $('status').textContent = `Could not start: ${error.message}`;
  $('adapter').textContent = 'WebGPU unavailable';
});
setUpPad(app);
drawLosses();

$('start').addEventListener('click', async () => {
  $('start').disabled = true;
  $('stop').disabled = false;
  try {
    await train(app, { epochs: Number($('epochs').value), steps: Number($('steps').value), testLimit: Number($('test-limit').value) });
  } catch (error) {
    $('train-status').textContent = `Training failed: ${error.message}`;
  } finally {
    $('start').disabled = false;
    $('stop').disabled = true;
  }
});
$('stop').addEventListener('click', () => (stopping = true));
$('export').addEventListener('click', () => exportWeights(app));
$('generate-button').addEventListener('click', async () => {
  $('generate-button').disabled = true;
  try {
    const number = (id) => Number($(id).value);
    await generateText(app, { prompt: $('prompt').value, maxNewTokens: number('new-tokens'), temperature: number('temperature'), topP: number('top-p'), seed: number('seed') });
  } catch (error) {
    $('generate-status').textContent = `Generation failed: ${error.message}`;
  } finally {
    $('generate-button').disabled = false;
  }
});

/** For tests and the console: the same functions the buttons use. */
window.mnistApp = {
  ready: app.then(({ trainer }) => ({ adapter: trainer.adapter, target: trainer.target })),
  train: (options) => train(app, options),
  evaluate: async (limit = 10000) => evaluate((await app).trainer, await loadMnist(), limit),
  /** test image `index` as 28×28 values in [0, 1] and its label */
  testImage: async (index) => {
    const data = await loadMnist();
    return { pixels: Array.from(data.testImages.values.subarray(index * PIXELS, (index + 1) * PIXELS)), label: data.testLabels.values[index] };
  },
  /** the class of a 28×28 image given directly (no drawing) */
  classifyPixels: async (pixels) => (await classify(app, Float32Array.from(pixels, (v) => v / 255))).digit,
  /** generates as the Generate button does: { prompt, maxNewTokens, temperature, topP, seed } → { ids, text } */
  generate: (options) => generateText(app, options),
};
