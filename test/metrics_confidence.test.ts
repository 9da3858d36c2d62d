import { test } from "node:test";
import assert from "node:assert/strict";
import { incompleteBeta, meanInterval, studentTCdf, studentTQuantile } from "../lib/metrics/confidence";

const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a}, expected ${b}`);

test("Student-t quantiles match the printed tables", () => {
  // two-sided 95% (p = 0.975) and one-sided 95% critical values of any statistics table
  const table: Array<[number, number, number]> = [[0.975, 1, 12.7062], [0.975, 2, 4.3027], [0.975, 5, 2.5706], [0.975, 17, 2.1098], [0.95, 10, 1.8125], [0.975, 1000, 1.9623]];
  for (const [p, df, t] of table) close(studentTQuantile(p, df), t, 5e-4, `t(${p}, ${df})`);
  close(studentTQuantile(0.025, 5), -2.5706, 5e-4, "lower tail");
  close(studentTCdf(0, 7), 0.5, 1e-12, "median");
  close(studentTCdf(1, 1), 0.75, 1e-10, "Cauchy: P(T <= 1) = 3/4");
  // I_x(1, 1) = x, I_x(2, 1) = x^2
  close(incompleteBeta(0.3, 1, 1), 0.3, 1e-12, "I_0.3(1,1)");
  close(incompleteBeta(0.3, 2, 1), 0.09, 1e-12, "I_0.3(2,1)");
  assert.throws(() => studentTQuantile(1, 3), /0 < p < 1/);
});

test("mean interval: mean +- t sd / sqrt(n); none from one value", () => {
  const m = meanInterval([1, 2, 3, 4, 5]);
  close(m.mean, 3, 1e-12, "mean");
  close(m.sd, Math.sqrt(2.5), 1e-12, "sd");
  close(m.hi - m.mean, (2.7764 * Math.sqrt(2.5)) / Math.sqrt(5), 1e-3, "half width");
  close(m.mean - m.lo, m.hi - m.mean, 1e-12, "symmetric");
  const one = meanInterval([2]);
  assert.equal(one.mean, 2);
  assert.ok(Number.isNaN(one.lo) && Number.isNaN(one.hi) && Number.isNaN(one.sd));
  assert.throws(() => meanInterval([]), /no values/);
});
