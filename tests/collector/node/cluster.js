// Real BullMQ queues on a Redis Cluster for the cluster tests: node cluster.js NODES_JSON PLAN_JSON.
// NODES_JSON: [{"host": ..., "port": ...}] (seeds of an ioredis Cluster). PLAN_JSON: [{"queue", "prefix",
// "succeed", "fail", "waiting", "delayed", "prioritized"}]: per queue, a real Worker completes `succeed` jobs and
// fails `fail` jobs, then `waiting`, `delayed` (1 h) and `prioritized` jobs are added and left. Prints one JSON
// line: {"<prefix>|<queue>": getJobCounts()} for every queue of the plan. A step with "hold": true starts a
// Worker that keeps running; the script then prints its counts and exits once its stdin is closed.
"use strict";
const { Queue, Worker } = require("bullmq");
const IORedis = require("ioredis");

function cluster(nodes) {
  return new IORedis.Cluster(nodes, { redisOptions: { maxRetriesPerRequest: null } });
}

async function drain(queue) {
  for (let i = 0; i < 600; i++) {
    const counts = await queue.getJobCounts("waiting", "prioritized", "active");
    if (!counts.waiting && !counts.prioritized && !counts.active) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`queue ${queue.name} did not drain`);
}

async function main() {
  const [nodesJson, planJson] = process.argv.slice(2);
  const nodes = JSON.parse(nodesJson);
  const plan = JSON.parse(planJson);
  const connection = cluster(nodes);
  const counts = {};
  const held = [];
  for (const step of plan) {
    const queue = new Queue(step.queue, { connection, prefix: step.prefix });
    for (let i = 0; i < (step.succeed || 0); i++) await queue.add("ok", { n: i });
    for (let i = 0; i < (step.fail || 0); i++) await queue.add("bad", { fail: "boom" });
    if (step.succeed || step.fail) {
      const worker = new Worker(step.queue, async (job) => {
        if (job.data.fail) throw new Error(job.data.fail);
        return { ok: true };
      }, { connection: cluster(nodes), prefix: step.prefix, drainDelay: 1 });
      await worker.waitUntilReady();
      await drain(queue);
      await worker.close();
    }
    for (let i = 0; i < (step.waiting || 0); i++) await queue.add("later", { n: i });
    for (let i = 0; i < (step.delayed || 0); i++) await queue.add("delayed", { n: i }, { delay: 3600000 });
    for (let i = 0; i < (step.prioritized || 0); i++) await queue.add("urgent", { n: i }, { priority: 3 });
    if (step.hold) {
      const worker = new Worker(step.queue, async () => ({ ok: true }), { connection: cluster(nodes),
        prefix: step.prefix });
      await worker.waitUntilReady();
      held.push(worker);
    }
    counts[`${step.prefix}|${step.queue}`] = await queue.getJobCounts();
    await queue.close();
  }
  console.log(JSON.stringify(counts));
  if (held.length) {
    process.stdin.resume();
    await new Promise((resolve) => process.stdin.on("end", resolve));
  }
  process.exit(0); // the workers' cluster connections are not closed by worker.close()
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
