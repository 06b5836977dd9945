// The reader fuzzer (test/fuzz/) in the suite: a few thousand seeded mutations of plans,
// safetensors files, ONNX models, NNEF graphs and tensor files and GGUF files, each of which must be accepted or refused with a PlanError, hash no more
// than twice the file's bytes, and (plans) keep every buffer within the plan's own limits and
// survive everything `mnc inspect` does with it. bench/fuzz.ts runs more cases and prints the table.
import { describe, expect, it } from 'vitest';
import { formatReport, fuzz } from './fuzz/fuzz';
import { ggufTarget, nnefTarget, nnefTensorTarget, onnxTarget, planTarget, safetensorsTarget } from './fuzz/targets';

describe('fuzzing the readers (seeded, bounded)', () => {
  it('plan: every mutated bundle is accepted or refused with a PlanError', async () => {
    const report = await fuzz(await planTarget(), { cases: 1500, seed: 17 });
    expect(report.failures, formatReport(report)).toBe(0);
    // the mutations reach past the checksums into the structural checks, and some survive
    for (const outcome of ['accepted', 'refused: bad-manifest', 'refused: corrupt-section', 'refused: truncated', 'refused: bad-header']) {
      expect(report.outcomes.get(outcome)?.count ?? 0, `${outcome}\n${formatReport(report)}`).toBeGreaterThan(0);
    }
  });

  it('safetensors: every mutated file is accepted or refused with a PlanError', async () => {
    const report = await fuzz(safetensorsTarget(), { cases: 2000, seed: 17 });
    expect(report.failures, formatReport(report)).toBe(0);
    expect(report.outcomes.get('accepted')?.count ?? 0).toBeGreaterThan(0);
    expect(report.outcomes.get('refused: bad-input')?.count ?? 0).toBeGreaterThan(0);
  });

  it('onnx: every mutated model is imported or refused with a CompileError', async () => {
    const report = await fuzz(onnxTarget(), { cases: 1500, seed: 17 });
    expect(report.failures, formatReport(report)).toBe(0);
    expect(report.outcomes.get('accepted')?.count ?? 0, formatReport(report)).toBeGreaterThan(0);
    expect(report.outcomes.get('refused: model')?.count ?? 0, formatReport(report)).toBeGreaterThan(0);
  });

  it('gguf: every mutated file is read (and dequantized) or refused with a PlanError', async () => {
    const report = await fuzz(ggufTarget(), { cases: 2000, seed: 17 });
    expect(report.failures, formatReport(report)).toBe(0);
    for (const outcome of ['accepted', 'refused: bad-header', 'refused: truncated', 'refused: unsupported-type', 'refused: bad-magic']) {
      expect(report.outcomes.get(outcome)?.count ?? 0, `${outcome}\n${formatReport(report)}`).toBeGreaterThan(0);
    }
  });

  it('nnef: every mutated graph.nnef is imported or refused with a CompileError', async () => {
    const report = await fuzz(nnefTarget(), { cases: 1000, seed: 17 });
    expect(report.failures, formatReport(report)).toBe(0);
    expect(report.outcomes.get('accepted')?.count ?? 0, formatReport(report)).toBeGreaterThan(0);
    expect(report.outcomes.get('refused: model')?.count ?? 0, formatReport(report)).toBeGreaterThan(0);
  });

  it('nnef-dat: every mutated .dat file is read or refused with a TensorFileError or CompileError', async () => {
    const report = await fuzz(nnefTensorTarget(), { cases: 600, seed: 17 });
    expect(report.failures, formatReport(report)).toBe(0);
    expect(report.outcomes.get('accepted')?.count ?? 0, formatReport(report)).toBeGreaterThan(0);
    expect(report.outcomes.get('refused: tensor-file')?.count ?? 0, formatReport(report)).toBeGreaterThan(0);
  });
});
