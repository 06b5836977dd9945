// Parameter names for imported models (ONNX initializers, NNEF variables): the model's own
// name made safe for the plan (letters, digits, _ . - / only, not starting with a digit or
// punctuation) and unique among the model's parameters.

/** `name` as a plan parameter name, unique within `used` (which it joins). */
export function parameterName(name: string, used: Set<string>): string {
  const safe = name.replace(/[^A-Za-z0-9_.\-/]/g, '_');
  const base = /^[A-Za-z_]/.test(safe) ? safe : `_${safe}`;
  let n = base;
  for (let k = 1; used.has(n); k++) n = `${base}_${k}`;
  used.add(n);
  return n;
}
