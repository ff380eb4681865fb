"""Tiny randomly initialised CLIP and BLIP (transformers) for plumbing tests: their outputs mean nothing."""

import json
import string


def tiny_clip(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=1,
            max_position_embeddings=16,
            eos_token_id=1,
            bos_token_id=0,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=1, image_size=16, patch_size=8
        ),
        projection_dim=4,
    )
    proc = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
        tokenizer=tok,
    )
    return CLIPModel(cfg).eval(), proc


def tiny_blip(tmp_path):
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    (tmp_path / "bert_vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase))
    )
    tok = BertTokenizer(str(tmp_path / "bert_vocab.txt"))
    cfg = BlipConfig(
        text_config=dict(
            vocab_size=31,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=1,
            max_position_embeddings=32,
            bos_token_id=2,
            sep_token_id=3,
            pad_token_id=0,
            encoder_hidden_size=8,
        ),
        vision_config=dict(
            hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=1, image_size=16, patch_size=8
        ),
        projection_dim=4,
    )
    proc = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 16, "width": 16}), tokenizer=tok)
    return BlipForConditionalGeneration(cfg).eval(), proc
