// SmolLM2-135M's config.json (LlamaForCausalLM, tied head) as the plans bench/serve-load.ts
// serves: `batched` holds 64 sequences and decodes them in one set of dispatches per step
// (decodeBatch), `single` holds one (a decode entry of one token). Both hold 256 positions per
// sequence, prompts of up to 64 tokens in one prefill. Random weights (the builder's default
// init) unless --weights gives a checkpoint.
//
//   mnc compile bench/models/smollm2-135m-serve.ts --model batched -o smollm2-batch64.mnplan
//   mnc compile bench/models/smollm2-135m-serve.ts --model single -o smollm2-single.mnplan
import { llamaModel, type HfLlamaConfig } from '../../models/llama';

export const SMOLLM2_135M_CONFIG: HfLlamaConfig = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 49152,
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  rms_norm_eps: 1e-5,
  rope_theta: 100000,
  max_position_embeddings: 8192,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
};

const SIZES = { maxSequence: 256, maxPrompt: 64 };

export const batched = llamaModel(SMOLLM2_135M_CONFIG, { ...SIZES, decodeBatch: 64 }, 'SmolLM2-135M decoding 64 sequences per step');
export const single = llamaModel(SMOLLM2_135M_CONFIG, SIZES, 'SmolLM2-135M, one sequence');
