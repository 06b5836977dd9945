// SmolLM2-135M's config.json (LlamaForCausalLM, tied head) as the plans bench/serve-load.ts
// serves: `batched` holds 64 sequences and decodes them in one set of dispatches per step
// (decodeBatch), `single` holds one (a decode entry of one token). Both hold 256 positions per
// sequence, prompts of up to 64 tokens in one prefill. Random weights (the builder's default
// init) unless --weights gives a checkpoint.
//
//   mnc compile bench/models/smollm2-135m-serve.ts --model batched -o smollm2-batch64.mnplan
//   mnc compile bench/models/smollm2-135m-serve.ts --model single -o smollm2-single.mnplan
import { llamaModel } from '../../models/llama';
import { SMOLLM2_135M_CONFIG } from './smollm2-135m-config';


const SIZES = { maxSequence: 256, maxPrompt: 64 };

export const batched = llamaModel(SMOLLM2_135M_CONFIG, { ...SIZES, decodeBatch: 64 }, 'SmolLM2-135M decoding 64 sequences per step');
export const single = llamaModel(SMOLLM2_135M_CONFIG, SIZES, 'SmolLM2-135M, one sequence');
