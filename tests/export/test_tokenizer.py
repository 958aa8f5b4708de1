"""videoccam/export/tokenizer.py: media tokens, chat template and generation config of the exported tokenizer."""

from __future__ import annotations


def test_prepare_tokenizer_adds_missing_media_tokens_only():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from xtuner.utils import PROMPT_TEMPLATE

    from videoccam.export.tokenizer import make_generation_config, prepare_tokenizer

    vocab = {w: i for i, w in enumerate(["[UNK]", "</s>", "<s>", "hello", "world", "USER:", "ASSISTANT:"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    plain = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="</s>", bos_token="<s>")
    prepared = prepare_tokenizer(plain, PROMPT_TEMPLATE.vicuna)
    assert "<image>" not in plain.get_vocab()  # the original is untouched
    assert prepared.encode("hello world", add_special_tokens=False) == plain.encode("hello world",
                                                                                   add_special_tokens=False)
    assert {"<image>", "<video>"} <= set(prepared.additional_special_tokens)
    assert prepared.convert_tokens_to_ids("<image>") >= len(vocab)
    # vicuna has no SUFFIX_AS_EOS: every answer ends with the EOS token, and the next turn starts with BOS
    text = prepared.apply_chat_template(
        [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world"},
         {"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True)
    assert text == "<s>USER: hello ASSISTANT:world</s>\n<s>USER: hello ASSISTANT:"
    assert make_generation_config(prepared, PROMPT_TEMPLATE.vicuna).eos_token_id == [vocab["</s>"]]
