#!/usr/bin/env python3
"""Writes the seed inputs of fuzz/tokenizer_fuzz.cpp into fuzz/seeds/tokenizer/. The mode byte is the
last byte (FuzzedDataProvider reads integers from the end): 0 Qwen3 text, 1 tokenizer.json, 2 chat.
Usage: python3 fuzz/seeds/make_tokenizer_seeds.py"""
import json
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer")


def small_tokenizer_json():
    vocab = {chr(c): c - 33 for c in range(33, 127)}
    vocab.update({"\u0120": 94, "\u010a": 95, "he": 96, "ll": 97, "hell": 98, "hello": 99})
    return {
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}| ?\\p{L}+|\\s+(?!\\S)|\\s+|[^\\s\\p{L}\\p{N}]+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
        "model": {"type": "BPE", "vocab": vocab, "ignore_merges": True,
                  "merges": ["h e", "l l", ["he", "ll"], ["hell", "o"]]},
        "decoder": {"type": "ByteLevel"},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [200], "tokens": ["<s>"]}}},
        "added_tokens": [{"id": 200, "content": "<s>", "special": True, "lstrip": True, "rstrip": False,
                          "single_word": False, "normalized": False},
                         {"id": 201, "content": "ok", "special": False, "single_word": True,
                          "normalized": True}],
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {
        "qwen_text": "Hello world <|im_start|>user\n\u4f60\u597d caf\u0065\u0301 \U0001F468\u200d\U0001F469 123 I'M\n\n".encode()
                     + b"\x00\x00",
        "qwen_invalid_utf8": b"ok\xff\xe2\x82 \xf0\x80 <think>x</think>\x00\x00",
        "tokenizer_json": b"\\;" + json.dumps(small_tokenizer_json()).encode() + b"\x01",
        "chat": b"hi\\;there\\;<think>r</think>a\\;\x01\x02\x00\x02",
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("wrote", len(seeds), "seeds to", OUT)


if __name__ == "__main__":
    main()
