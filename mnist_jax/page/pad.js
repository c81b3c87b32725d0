// The drawing pad's pen, for the web page and for `mnist-jax demo` alike: round black strokes
// `brush()` pixels wide on a transparent canvas, so that its alpha channel is the ink, and
// `lifted()` called each time a stroke ends. Returns the canvas's 2-D context.
function attachPad(canvas, brush, lifted) {
  const pen = canvas.getContext('2d', { willReadFrequently: true });
  let last = null;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  const line = (from, to) => {
    // Set with each stroke: resizing the canvas resets them.
    Object.assign(pen, { lineWidth: brush(), lineCap: 'round', lineJoin: 'round', strokeStyle: 'black' });
    pen.beginPath(); pen.moveTo(...from); pen.lineTo(...to); pen.stroke();
  };
  canvas.addEventListener('pointerdown', (event) => {
    canvas.setPointerCapture(event.pointerId);
    last = at(event);
    line(last, last);
  });
  canvas.addEventListener('pointermove', (event) => {
    if (!last) return;
    const point = at(event);
    line(last, point);
    last = point;
  });
  const end = () => { if (last) { last = null; lifted(); } };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  return pen;
}
