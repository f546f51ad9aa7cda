// The video page: frames drawn on canvases with their masks (raw ids from /mask, exact), a scrubber,
// play/pause, a toggle and colour per object, opacity, and the object presence timeline.
"use strict";
(function () {
  const root = document.getElementById("viewer");
  if (!root) return;
  const base = "/" + encodeURIComponent(root.dataset.split) + "/" + encodeURIComponent(root.dataset.video);
  const state = { index: 0, opacity: 0.5, playing: null, colours: {}, shown: {}, token: 0 };

  function el(tag, attrs, parent) {
    const node = document.createElement(tag);
    Object.assign(node, attrs || {});
    if (parent) parent.appendChild(node);
    return node;
  }
  function rgb(hex) {
    return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  }
  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("cannot load " + url));
      img.src = url;
    });
  }
  async function loadIds(url) {
    const res = await fetch(url);
    if (res.status === 204) return null;
    if (!res.ok) throw new Error(url + ": " + res.status);
    return new Uint8Array(await res.arrayBuffer());
  }

  // The same rule as mose_shards/tools/overlay.py: tint shown objects, outline them, hatch void.
  function paint(ctx, img, ids, w, h) {
    ctx.drawImage(img, 0, 0, w, h);
    if (!ids) return;
    const frame = ctx.getImageData(0, 0, w, h);
    const px = frame.data, a = state.opacity;
    for (let p = 0; p < w * h; p++) {
      const id = ids[p];
      if (id === 0) continue;
      const q = 4 * p;
      if (id === 255) {
        const x = p % w, y = (p - x) / w;
        if ((x + y) % 6 < 2) { px[q] = px[q + 1] = px[q + 2] = 255; }
        else { for (let c = 0; c < 3; c++) px[q + c] = Math.round(0.5 * px[q + c]); }
        continue;
      }
      if (!state.shown[id]) continue;
      const col = state.colours[id];
      const x = p % w;
      const edge = x === 0 || x === w - 1 || p < w || p >= w * (h - 1) ||
        ids[p - 1] !== id || ids[p + 1] !== id || ids[p - w] !== id || ids[p + w] !== id;
      for (let c = 0; c < 3; c++) px[q + c] = edge ? col[c] : Math.round((1 - a) * px[q + c] + a * col[c]);
    }
    ctx.putImageData(frame, 0, 0);
  }

  async function show(info, views, index) {
    const token = ++state.token;
    const img = await loadImage("/frame" + base + "/" + index + ".jpg");
    const layers = await Promise.all(views.map((v) => loadIds("/" + v.kind + base + "/" + index)));
    if (token !== state.token) return;
    views.forEach((v, i) => paint(v.ctx, img, layers[i], info.width, info.height));
    state.index = index;
    document.getElementById("scrub").value = index;
    const name = info.frames[index];
    document.getElementById("status").textContent =
      "frame " + index + " / " + (info.frames.length - 1) + " (" + name + ")" + (info.has_mask[index] ? "" : " no mask");
    drawTimeline(info);
    document.body.dataset.rendered = String(index);
  }

  function drawTimeline(info) {
    const canvas = document.getElementById("timeline");
    const ctx = canvas.getContext("2d"), n = info.frames.length, rowH = 10;
    const cell = canvas.width / n;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    info.objects.forEach((o, r) => {
      ctx.fillStyle = o.colour;
      o.frames.forEach((f) => ctx.fillRect(f * cell, r * rowH + 1, Math.max(1, cell - 1), rowH - 2));
    });
    ctx.fillStyle = "rgba(0,0,0,0.35)";
    ctx.fillRect(state.index * cell, 0, Math.max(1, cell), canvas.height);
  }

  async function start() {
    const res = await fetch("/api/video" + base);
    if (!res.ok) throw new Error("video: " + res.status);
    const info = await res.json();
    const stage = el("div", { id: "stage" }, root);
    const kinds = info.pred ? [["mask", "ground truth"], ["pred", "prediction"]] : [["mask", "ground truth"]];
    const views = kinds.map(([kind, label]) => {
      const fig = el("figure", {}, stage);
      const canvas = el("canvas", { id: "view-" + kind, className: "view", width: info.width, height: info.height }, fig);
      el("figcaption", { textContent: label }, fig);
      return { kind, ctx: canvas.getContext("2d", { willReadFrequently: true }) };
    });
    const controls = el("div", { id: "controls" }, root);
    const play = el("button", { id: "play", textContent: "play" }, controls);
    const scrub = el("input", { id: "scrub", type: "range", min: 0, max: info.frames.length - 1, value: 0 }, controls);
    const opLabel = el("label", { textContent: "opacity " }, controls);
    const opacity = el("input", { id: "opacity", type: "range", min: 0, max: 100, value: 50 }, opLabel);
    el("span", { id: "status" }, controls);
    const objects = el("div", { id: "objects" }, root);
    info.objects.forEach((o) => {
      state.colours[o.id] = rgb(o.colour);
      state.shown[o.id] = true;
      const label = el("label", {}, objects);
      const box = el("input", { type: "checkbox", checked: true, id: "show-" + o.id }, label);
      const colour = el("input", { type: "color", value: o.colour, id: "colour-" + o.id }, label);
      label.appendChild(document.createTextNode(" object " + o.id));
      box.addEventListener("change", () => { state.shown[o.id] = box.checked; show(info, views, state.index); });
      colour.addEventListener("input", () => { state.colours[o.id] = rgb(colour.value); show(info, views, state.index); });
    });
    el("canvas", { id: "timeline", width: Math.max(400, Math.min(1600, info.frames.length * 8)),
                   height: Math.max(10, info.objects.length * 10) }, root)
      .addEventListener("click", (e) => {
        const t = e.currentTarget;
        const f = Math.floor((e.offsetX / t.clientWidth) * info.frames.length);
        show(info, views, Math.min(info.frames.length - 1, Math.max(0, f)));
      });
    scrub.addEventListener("input", () => show(info, views, Number(scrub.value)));
    opacity.addEventListener("input", () => { state.opacity = Number(opacity.value) / 100; show(info, views, state.index); });
    play.addEventListener("click", () => {
      if (state.playing) { clearInterval(state.playing); state.playing = null; play.textContent = "play"; return; }
      play.textContent = "pause";
      state.playing = setInterval(() => show(info, views, (state.index + 1) % info.frames.length), 150);
    });
    await show(info, views, 0);
  }

  start().catch((err) => {
    const p = el("p", { className: "error", textContent: String(err) }, root);
    console.error(err);
    return p;
  });
})();
