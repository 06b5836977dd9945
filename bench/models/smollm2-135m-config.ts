// HuggingFaceTB/SmolLM2-135M's config.json (LlamaForCausalLM, tied head): the architecture the
// benches build with random weights (no checkpoint can be downloaded here), as
// bench/llama_torch.py's SMOLLM2_135M builds it in transformers.
import type { HfLlamaConfig } from '../../models/llama';

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
