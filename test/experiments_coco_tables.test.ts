import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { fromRoot } from "../lib/core/paths";
import { generateUNet2D } from "../lib/distill/generator";
import { clipTokenCondition } from "../lib/distill/ode_pairs";
import * as os from "os";
import { StableDiffusion } from "../lib/diffusion/sd_pipeline";
import { claims, COCO_TABLES_CONFIGS, computeRows, fidFloor, frozenStudent, MeasuredRow, NF, noiseFloorRows, PAPER_TABLE1, PAPER_TABLE2, sd15Generators, sd15Missing, Sd15TablesConfig, table1Rows, table2Rows, WORLD_DIFFERENCES } from "../lib/experiments/coco_tables";
import { FeatureNet } from "../lib/metrics/feature_net";
import { evaluateT2i } from "../lib/metrics/t2i_eval";
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
  const [close, few, fast] = claims({ table1: t });
  assert.equal(close.verdict, "held", close.ours);
  assert.equal(few.verdict, "held");
  assert.equal(fast.verdict, "held");
  assert.match(fast.ours, /1600 ms, student 30 ms .*\(53x\)/);
  const worse = claims({ table1: table1Rows([rows[0], rows[1], { ...rows[3], eval: { ...rows[3].eval, fid: 45 } }], WORLD_DIFFERENCES) });
  assert.deepEqual(worse.map((c) => c.verdict), ["did not hold", "did not hold", "held"]);
  assert.ok(claims({}).every((c) => c.verdict === "not tested"));
  // a few-step row 0.5 worse than the student: beaten without a floor, within a floor of 1
  const near = table1Rows([rows[0], { ...rows[1], eval: { ...rows[1].eval, fid: 11.4 } }, rows[3]], WORLD_DIFFERENCES);
  assert.equal(claims({ table1: near })[1].verdict, "held");
  const floor = noiseFloorRows({ rows, floor: { ...rows[3], id: "student-ladder-5-floor", eval: { ...rows[3].eval, fid: 11.3, clipScore: 0.31 } } }, [{ metric: "FID-wCLIP", "full recipe: seed spread": 0.2 }]);
  assert.deepEqual(floor.map((r) => r["evaluation noise |difference|"]), [0.4, 0.01]);
  assert.equal(floor[0]["training-seed spread (03b, 200 captions)"], 0.2);
  assert.equal(floor[1]["training-seed spread (03b, 200 captions)"], null);
  assert.equal(fidFloor(floor), 0.4);
  assert.equal(fidFloor([{ ...floor[0], "training-seed spread (03b, 200 captions)": 3.45 }]), 3.45);
  const within = claims({ table1: near, floor: [{ ...floor[0], "training-seed spread (03b, 200 captions)": 1 }] })[1];
  assert.equal(within.verdict, "did not hold");
  assert.match(within.why!, /within the noise floor/);
  assert.match(within.ours, /noise floor 1 /);
  const beaten = claims({ table1: table1Rows([rows[0], { ...rows[1], eval: { ...rows[1].eval, fid: 9 } }, rows[3]], WORLD_DIFFERENCES), floor })[1];
  assert.match(beaten.why!, /teacher, DDIM 2, guidance 8 beats the student beyond the floor/);
  assert.throws(() => noiseFloorRows({ rows: rows.slice(0, 2), floor: { ...rows[3], id: "student-ladder-5-floor" } }), /has no row it repeats/);
  assert.throws(() => claims({ table1: [{ model: "ours: teacher, DDIM 50", NFE: 100 }] }), /needs an FID column/);
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

test("paper scale's generators (SD1.5 DDIM with guidance, the one-step student) on a tiny SD folder, through the protocol's crop and resize", async (t) => {
  const folder = fromRoot("test", "fixtures", "sd", "tiny_pipeline");
  const sd = StableDiffusion.fromFolder(folder);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-coco-sd-"));
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const [teacher, student] = sd15Generators(sd, sd.unet, { timestep: 999, prediction: "epsilon" }, { steps: 2, guidance: 8, sd15: folder, student: folder });
  assert.equal(teacher.nfe, 4);
  const caps = ["a red bus", "a cat on a mat", "two dogs"];
  const before = tf.memory().numTensors;
  for (const g of [teacher, student]) {
    const x = await g.make("tfjs")(caps.slice(0, 2), [1, 2]);
    assert.deepEqual(x.shape, [2, 16, 16, 3]);
    const px = x.dataSync();
    assert.ok(px.every((v) => v >= -1 && v <= 1));
    const again = await g.make("tfjs")(caps.slice(0, 1), [1]);
    assert.deepEqual(Array.from(again.dataSync()), Array.from(px.subarray(0, 16 * 16 * 3)), `${g.name}: a caption's sample depends on its seed alone`);
    tf.dispose([x, again]);
  }
  const net: FeatureNet = { name: "mean", label: "mean", dim: 3, features: async (x) => tf.tidy(() => tf.mean(x, [1, 2]) as tf.Tensor2D) };
  const r = await evaluateT2i(path.join(tmp, "student"), caps, student.make("tfjs"), { fid: net, reference: { mu: new Float64Array(3), sigma: Float64Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1]), count: 10 }, referenceTag: "test" }, { seed: 3, batch: 2, shardSize: 2, size: 8 });
  assert.ok(Number.isFinite(r.fid) && r.samples === 3);
  assert.equal(tf.memory().numTensors, before);
  sd.dispose();
});
