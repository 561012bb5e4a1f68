// ONNX Runtime's per-node profile for bench/profile_vs_ort.py: runs the exported model (bench/e2e_torch.py
// prepare) REPS times after two warm-up runs with ORT's profiler on (the same session options as
// infer_ort.js) and prints the profile file's path. Usage:
//   node ort_profile.js MODEL.onnx BATCH SIZE REPS THREADS PREFIX
// Run with NODE_PATH pointing at the scratch node_modules bench/run.sh installs onnxruntime-node into.
const ort = require('onnxruntime-node');

async function main() {
  const [model, n, size, reps, threads, prefix] = [process.argv[2], +process.argv[3], +process.argv[4],
                                                   +process.argv[5], +process.argv[6], process.argv[7]];
  const s = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all', executionProviders: ['cpu'], enableProfiling: true, profileFilePrefix: prefix,
  });
  const data = new Float32Array(n * 3 * size * size);
  for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
  const feeds = { x: new ort.Tensor('float32', data, [n, 3, size, size]) };
  for (let i = 0; i < reps + 2; i++) await s.run(feeds);
  const file = s.endProfiling();
  console.log(`PROFILE ${file}`);
  await s.release();
}
main().catch((e) => { console.error(e); process.exit(1); });
