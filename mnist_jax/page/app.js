// The page: a drawing pad whose ink goes through model.onnx in onnxruntime-web after every stroke.
// The graph holds both steps, exported from JAX by `mnist-jax export --format web`: the drawing
// made MNIST-like (mnist_jax/apps/drawing.py, the 28x28 input shown beside the pad) and the classifier.
// With the run's rule of doubt the graph also says what it doubts: "unsure" or "not a digit".
// manifest.json says which run it is, its classes, its doubts, and where onnxruntime-web's files are.
'use strict';

const pad = document.getElementById('pad');
const pen = pad.getContext('2d', { willReadFrequently: true });  // drawn on by pad.js's attachPad
const seen = document.getElementById('seen').getContext('2d');
const about = document.querySelector('[data-testid="about"]');
const topClass = document.querySelector('[data-testid="top-class"]');
const statusLine = document.querySelector('[data-testid="status"]');
const bars = document.getElementById('bars');
const DRAW_HINT = 'Draw a digit on the pad.';
const page = { session: null, manifest: null, busy: false, again: false };

function say(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle('error', isError);
}

function failed(text) {
  about.textContent = 'The page cannot classify anything.';
  say(text, true);
  document.body.dataset.state = 'failed';
}

async function load() {
  try {
    const response = await fetch('manifest.json');
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    page.manifest = await response.json();
  } catch (error) {
    return failed(`Could not load manifest.json: ${error.message}.`);
  }
  const manifest = page.manifest;
  pad.width = pad.height = manifest.pad;  // the size the model's graph takes in
  attachPad(pad, () => manifest.brush, () => classify());  // drawing starts here; answers once the model is in
  if (typeof ort === 'undefined') {
    return failed(`Could not load onnxruntime-web from ${manifest.ort.script}: without a network the page needs `
                  + 'its own copy (export with --ort-dir).');
  }
  ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation (COOP/COEP), which static hosts seldom give
  ort.env.wasm.wasmPaths = new URL(manifest.ort.files, document.baseURI).href;  // a bare 'ort/' is no module path
  try {
    page.session = await ort.InferenceSession.create(manifest.model, { executionProviders: ['wasm'] });
  } catch (error) {
    return failed(`Could not load the model (${manifest.model}): ${error.message || error}`);
  }
  const accuracy = manifest.test_accuracy == null ? '' : `, test accuracy ${(100 * manifest.test_accuracy).toFixed(2)}%`;
  about.textContent = `Weights: ${manifest.run}, ${manifest.dataset}${accuracy}. The model runs in this browser `
                      + `(onnxruntime-web ${manifest.ort.version}): nothing you draw is sent anywhere.`;
  showBars(null);
  say(DRAW_HINT);
  document.body.dataset.readyMs = performance.now().toFixed(0);  // since navigation started
  document.body.dataset.state = 'ready';
  classify();  // what was drawn while the model loaded
}

function showBars(probabilities) {
  const names = page.manifest.class_names;
  const best = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
  bars.replaceChildren(...names.map((name, i) => {
    const p = probabilities ? probabilities[i] : 0;
    const row = document.createElement('li');
    row.dataset.class = name;
    row.dataset.probability = String(p);
    row.classList.toggle('best', i === best);
    row.innerHTML = '<span class="name"></span><span class="bar"><span class="fill"></span></span><span class="value"></span>';
    row.querySelector('.name').textContent = name;
    row.querySelector('.fill').style.width = `${100 * p}%`;
    row.querySelector('.value').textContent = probabilities ? `${(100 * p).toFixed(1)}%` : '';
    return row;
  }));
}

function showDigit(digit) {
  const pixels = seen.createImageData(28, 28);
  digit.forEach((level, i) => { pixels.data.set([level, level, level, 255], 4 * i); });
  seen.putImageData(pixels, 0, 0);
}

function clearAnswer() {
  topClass.textContent = '';
  delete statusLine.dataset.doubt;
  delete topClass.dataset.latencyMs;
  seen.clearRect(0, 0, 28, 28);
  if (page.manifest) showBars(null);
}

async function classify() {
  if (!page.session) return;
  if (page.busy) { page.again = true; return; }  // the newest drawing is read once this answer is in
  const { data } = pen.getImageData(0, 0, pad.width, pad.height);
  const ink = new Uint8Array(pad.width * pad.height);
  let inked = false;
  for (let i = 0; i < ink.length; i++) { ink[i] = data[4 * i + 3]; inked = inked || ink[i] > 0; }
  if (!inked) { clearAnswer(); say(DRAW_HINT); return; }
  page.busy = true;
  const start = performance.now();
  try {
    const output = await page.session.run({ ink: new ort.Tensor('uint8', ink, [pad.height, pad.width]) });
    const probabilities = Array.from(output.probabilities.data);
    const best = probabilities.indexOf(Math.max(...probabilities));
    const name = page.manifest.class_names[best];
    const share = `${(100 * probabilities[best]).toFixed(1)}%`;
    showDigit(output.digit.data);
    showBars(probabilities);
    topClass.textContent = `${name} (${share})`;
    topClass.dataset.latencyMs = (performance.now() - start).toFixed(1);
    // The run's doubts, as `mnist-jax predict` says them: its rule's verdict where the graph has one
    // (manifest.doubts gives its codes), else "unsure" below the run's threshold.
    const doubts = page.manifest.doubts && output.verdict ? page.manifest.doubts : null;
    const verdict = doubts ? Number(output.verdict.data[0]) : null;
    const unsure = doubts ? verdict === doubts.unsure
      : page.manifest.unsure_below != null && probabilities[best] < page.manifest.unsure_below;
    if (doubts) statusLine.dataset.doubt = String(output.doubt.data[0]); else delete statusLine.dataset.doubt;
    document.body.dataset.answers = String(Number(document.body.dataset.answers || 0) + 1);  // for tests
    if (doubts && verdict === doubts.not_a_digit) {
      const thing = page.manifest.thing || "digit";
      say(`Not a ${thing}: it looks like none of the ${thing}s the model learned (its guess: a ${name} (${share})).`);
    } else if (unsure) {
      say(`Unsure: perhaps a ${name} (${share}), but the model cannot stand behind it.`);
    } else {
      say(`The model reads a ${name} (${share}).`);
    }
  } catch (error) {
    clearAnswer();
    say(`The model failed on this drawing: ${error.message || error}`, true);
  } finally {
    page.busy = false;
    if (page.again) { page.again = false; classify(); }
  }
}

document.getElementById('clear').addEventListener('click', () => {
  pen.clearRect(0, 0, pad.width, pad.height);
  clearAnswer();
  say(DRAW_HINT);
});

// An uploaded picture becomes ink on the pad: fitted into it, its strokes found against the paper
// (dark on light or light on dark, as the border tells), or its opacity where its border is transparent.
document.getElementById('upload').addEventListener('change', async (event) => {
  const file = event.target.files[0];
  event.target.value = '';
  if (!file) return;
  let picture;
  try {
    picture = await createImageBitmap(file);
  } catch (error) {
    clearAnswer();
    return say(`Could not read ${file.name}: not a picture this browser can open (PNG, JPEG, ...).`, true);
  }
  const scratch = document.createElement('canvas');
  scratch.width = pad.width; scratch.height = pad.height;
  const paint = scratch.getContext('2d', { willReadFrequently: true });
  const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
  const [w, h] = [picture.width * scale, picture.height * scale];
  paint.drawImage(picture, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  const { data } = paint.getImageData(0, 0, pad.width, pad.height);
  const border = [];
  for (let i = 0; i < pad.width * pad.height; i++) {
    const [x, y] = [i % pad.width, Math.floor(i / pad.width)];
    const inside = x >= (pad.width - w) / 2 + 1 && x < (pad.width + w) / 2 - 1 && y >= (pad.height - h) / 2 + 1 && y < (pad.height + h) / 2 - 1;
    if (inside && (x < (pad.width - w) / 2 + 3 || x >= (pad.width + w) / 2 - 3 || y < (pad.height - h) / 2 + 3 || y >= (pad.height + h) / 2 - 3)) border.push(i);
  }
  const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
  const transparent = median(border.map((i) => data[4 * i + 3])) < 128;
  const lightness = (i) => { const a = data[4 * i + 3] / 255;  // over white paper
    return a * (0.299 * data[4 * i] + 0.587 * data[4 * i + 1] + 0.114 * data[4 * i + 2]) + (1 - a) * 255; };
  const paper = median(border.map(lightness));
  const ink = new Uint8ClampedArray(pad.width * pad.height);
  for (let i = 0; i < ink.length; i++) {
    if (transparent) ink[i] = data[4 * i + 3];
    else if (data[4 * i + 3] > 0) ink[i] = paper >= 128 ? paper - lightness(i) : lightness(i) - paper;
  }
  const strokes = pen.createImageData(pad.width, pad.height);
  ink.forEach((level, i) => { strokes.data[4 * i + 3] = level; });
  pen.putImageData(strokes, 0, 0);
  if (ink.reduce((most, level) => Math.max(most, level), 0) < 8) {  // 8 of 255 grey levels: nothing anyone could see, as mnist_jax.apps.images says
    clearAnswer();
    return say(`No digit found in ${file.name}: the picture is blank, one colour throughout.`, true);
  }
  classify();
});

load();
