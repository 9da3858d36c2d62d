import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { fromRoot } from "../lib/core/paths";
import { generateUNet2D } from "../lib/distill/generator";
import { clipTokenCondition } from "../lib/distill/ode_pairs";
import { claims, COCO_TABLES_CONFIGS, computeRows, frozenStudent, MeasuredRow, NF, PAPER_TABLE1, PAPER_TABLE2, sd15Missing, Sd15TablesConfig, table1Rows, table2Rows, WORLD_DIFFERENCES } from "../lib/experiments/coco_tables";
import { SCHEDULER, tinyTextEncoder, tinyUNet, tokenRow } from "./t2i_tiny";

const PAPER = path.join(fromRoot(), "..", "shared", "PAPER.md");

test("the paper's Table 1 and Table 2 rows are PAPER.md's, number for number", { skip: fs.existsSync(PAPER) ? false : "../shared/PAPER.md not beside the checkout" }, () => {
  const text = fs.readFileSync(PAPER, "utf8").replace(/\s+/g, " ");
  const t1 = PAPER_TABLE1.map((r) => `${r.model.replace("SD1.5 (teacher, 50 steps)", "SD1.5 (50-step teacher)")} ${r.fid.toFixed(2)}`).join("; ");
  assert.ok(text.includes(t1), `PAPER.md lacks "${t1}"`);
  for (const r of PAPER_TABLE2) {
    const nums = [r.fid.toFixed(2), r.clip.toFixed(3), r.dreamDiv.toFixed(3), r.dreamSim === null ? "0." : r.dreamSim.toFixed(3)].join("/");
    assert.ok(text.includes(`${r.model.replace("SDXL-Base (teacher, 50 steps)", "SDXL-Base teacher (50 steps)")} ${nums}`), `${r.model} ${nums}`);
  }
  assert.ok(text.includes("Diffusion2GAN 9.29 (0.09 s per image)"));
  assert.ok(text.includes("InstaFlow reports 199 A100 GPU-days"));
});

const row = (id: string, name: string, nfe: number, fid: number, msTfjs: number, msOrt: number | null): MeasuredRow => ({
  id, name, nfe, eval: { samples: 1000, fidName: "FID-wCLIP", fid, clipScore: 0.3, seconds: 10, resumedShards: 0 }, latency: { tfjs: msTfjs / 1000, onnxruntime: msOrt === null ? null : msOrt / 1000, reps: 3, loadAverage: 2 },
});

test("Table 1: our rows beside the paper row each measures, the paper-only rows after; the claims read it", () => {
  const rows = [
    row("teacher-ddim50-cfg8", "teacher, DDIM 50, guidance 8", 100, 10, 12000, 1600),
    row("teacher-ddim2-cfg8", "teacher, DDIM 2, guidance 8", 4, 40, 500, 80),
    row("student-ladder-0", "regression only (E-LatentLPIPS), 1 step", 1, 14, 130, 30),
    row("student-ladder-5", "Diffusion2GAN (full recipe), 1 step", 1, 10.9, 130, 30),
  ];
  const t = table1Rows(rows, WORLD_DIFFERENCES);
  assert.equal(t.length, rows.length + PAPER_TABLE1.length - 2);
  assert.equal(t[0]["paper FID-30k"], 8.74);
  assert.equal(t[0]["protocol differences"], WORLD_DIFFERENCES);
  assert.equal(t[1]["paper row"], "(not in Table 1)");
  assert.equal(t[3]["paper FID-30k"], 9.29);
  assert.equal(t[3]["paper latency (s/img)"], 0.09);
  assert.equal(t[3]["latency onnxruntime (ms/img)"], 30);
  assert.equal(t[4]["model"], "paper only: InstaFlow-0.9B");
  assert.equal(t[4]["paper latency (s/img)"], NF);
  const [close, few, fast] = claims(t);
  assert.equal(close.verdict, "held", close.ours);
  assert.equal(few.verdict, "held");
  assert.equal(fast.verdict, "held");
  assert.match(fast.ours, /1600 ms, student 30 ms .*\(53x\)/);
  const worse = claims(table1Rows([rows[0], rows[1], { ...rows[3], eval: { ...rows[3].eval, fid: 45 } }], WORLD_DIFFERENCES));
  assert.deepEqual(worse.map((c) => c.verdict), ["did not hold", "did not hold", "held"]);
  assert.ok(claims(undefined).every((c) => c.verdict === "not tested"));
  assert.throws(() => claims([{ model: "ours: teacher, DDIM 50", NFE: 100 }]), /needs an FID column/);
});

test("Tables 2 and 4: the SDXL rows with [NF] where PAPER.md has none; compute hours from the records", () => {
  const t2 = table2Rows();
  assert.equal(t2.length, 4);
  assert.equal(t2[3]["paper DreamSim"], NF);
  const t4 = computeRows({
    teacher: { seconds: 3600 * 1.5, steps: 2700 },
    pairs: [{ guidance: 8, count: 500, teacherEvals: 50_000 }],
    students: [{ name: "Diffusion2GAN (full recipe), 1 step", training: { steps: 250, regressionSteps: 100, ganSteps: 150, msPerStep: 2000, seconds: 720, parameters: 1, tensorsAfterFirstStep: 1, tensorsAtEnd: 1, curve: [] } }],
  }, 5.7);
  assert.equal(t4[0]["ours (hours, 2 CPU cores)"], 1.5);
  assert.equal(t4[1]["ours (hours, 2 CPU cores)"], 0.079);
  assert.equal(t4[2]["ours (hours, 2 CPU cores)"], 0.2);
  assert.equal(t4[3]["paper (A100 GPU-days)"], 199);
});

test("paper scale: what is missing is named, each with the setting that provides it", () => {
  const c = { ...(COCO_TABLES_CONFIGS.paper as Sd15TablesConfig), sd15: undefined, student: "/no/such/unet", reference: undefined, inception: undefined, clip: undefined };
  const m = sd15Missing(c);
  assert.equal(m.length, 5);
  assert.match(m.join("\n"), /D2G_SD15_DIR/);
  assert.match(m.join("\n"), /D2G_STUDENT_UNET .*\/no\/such\/unet does not exist/);
  assert.match(m.join("\n"), /D2G_COCO2014_DIR .* or D2G_COCO_FID_STATS/);
});

test("the one-step student exported to ONNX (G whole: UNet at G's timestep and the x0 read-out) matches tfjs", async () => {
  const net = tinyUNet(3);
  const text = tinyTextEncoder(4);
  const z = tf.randomNormal([2, 8, 8, 4], 0, 1, "float32", 5) as tf.Tensor4D;
  const c = clipTokenCondition(text)(Float32Array.from([...tokenRow(1), ...tokenRow(2)]), 2);
  const g = { timestep: 999, prediction: "epsilon" as const };
  const frozen = frozenStudent("test-student", net, g, SCHEDULER);
  const [got] = await frozen.run([z, c]);
  const want = generateUNet2D(net, z, c, g, SCHEDULER);
  const diff = tf.max(tf.abs(tf.sub(got, want))).dataSync()[0];
  assert.ok(diff < 1e-4, `max |ONNX - tfjs| ${diff}`);
  tf.dispose([got, want]);
  // the first run exports and keeps what the export needs; later runs are flat
  const before = tf.memory().numTensors;
  for (let i = 0; i < 2; i++) (await frozen.run([z, c]))[0].dispose();
  assert.equal(tf.memory().numTensors, before);
  await frozen.dispose();
  tf.dispose([z, c]);
  net.dispose();
  text.dispose();
});
