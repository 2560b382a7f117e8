// A real Node bullmq Worker for the reader tests: node worker.js URL QUEUE [OPTIONS_JSON].
// Job data: {"sleep_ms": n} sleeps, {"fail": text} throws Error(text). Prints "ready" once its blocking
// connection is named; with "burst" (default true) it exits once wait, prioritized and active are empty.
"use strict";
const { Queue, Worker } = require("bullmq");

async function main() {
  const [url, queueName, raw] = process.argv.slice(2);
  const options = raw ? JSON.parse(raw) : {};
  const { hostname, port } = new URL(url);
  const connection = { host: hostname, port: Number(port), maxRetriesPerRequest: null };
  const prefix = options.prefix || "bull";
  const worker = new Worker(queueName, async (job) => {
    if (job.data.fail) throw new Error(job.data.fail);
    if (job.data.sleep_ms) await new Promise((resolve) => setTimeout(resolve, job.data.sleep_ms));
    return { ok: true };
  }, { connection, prefix, drainDelay: 1, ...(options.worker || {}) });
  const queue = new Queue(queueName, { connection, prefix });
  await worker.waitUntilReady();
  console.log("ready");
  if (options.burst === false) return;
  for (;;) {
    const counts = await queue.getJobCounts("waiting", "prioritized", "active");
    if (!counts.waiting && !counts.prioritized && !counts.active) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await worker.close();
  await queue.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
