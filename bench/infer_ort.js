// ONNX Runtime (onnxruntime-node, CPU) side of bench/run.sh: images/s of the exported MultiGrain
// ResNet (bench/e2e_torch.py prepare). Usage: node infer_ort.js MODEL.onnx BATCH SIZE REPS THREADS
// Run with NODE_PATH pointing at the scratch node_modules the script installs into.
const ort = require('onnxruntime-node');

async function main() {
  const [model, n, size, reps, threads] = [process.argv[2], +process.argv[3], +process.argv[4],
                                           +process.argv[5], +process.argv[6]];
  const s = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all', executionProviders: ['cpu'],
  });
  const data = new Float32Array(n * 3 * size * size);
  for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
  const feeds = { x: new ort.Tensor('float32', data, [n, 3, size, size]) };
  for (let i = 0; i < 2; i++) await s.run(feeds);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) await s.run(feeds);
  const dt = Number(process.hrtime.bigint() - t0) / 1e9 / reps;
  console.log(`RESULT images_per_s=${(n / dt).toFixed(3)} s_per_batch=${dt.toFixed(4)} threads=${threads} ort=${require('onnxruntime-node/package.json').version}`);
}
main().catch((e) => { console.error(e); process.exit(1); });
