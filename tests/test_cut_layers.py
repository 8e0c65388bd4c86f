"""tools.train.cut_layers: a trained checkpoint with fewer layers, everything else kept."""

from __future__ import annotations

import json

import pytest

from tools.train.cut_layers import cut, every_other, parse_keep

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def test_the_cut_checkpoint_has_exactly_the_kept_layers_and_the_sources_other_weights(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32)
    transformers.BertForMaskedLM(cfg).save_pretrained(str(src))
    (src / "output_vocab.json").write_text(json.dumps({"token_ids": [5, 6, 7]}))

    info = cut(src, out, "1,3")

    assert info["kept"] == [1, 3] and info["source_layers"] == 4
    assert json.loads((out / "cut.json").read_text())["kept"] == [1, 3]
    assert (out / "output_vocab.json").read_text() == (src / "output_vocab.json").read_text()
    before = transformers.AutoModelForMaskedLM.from_pretrained(str(src)).state_dict()
    after_net = transformers.AutoModelForMaskedLM.from_pretrained(str(out))
    assert after_net.config.num_hidden_layers == 2
    after = after_net.state_dict()
    renamed = {"bert.encoder.layer.1.": "bert.encoder.layer.0.", "bert.encoder.layer.3.": "bert.encoder.layer.1."}
    expected = {}
    for name, value in before.items():
        if name.startswith("bert.encoder.layer."):
            prefix = ".".join(name.split(".")[:4]) + "."
            if prefix not in renamed:
                continue
            name = renamed[prefix] + name[len(prefix):]
        expected[name] = value
    assert set(after) == set(expected)
    for name, value in expected.items():
        assert torch.equal(after[name], value), name


def test_keep_is_checked_against_the_models_layers():
    assert parse_keep("4, 0,2,2", 6) == [0, 2, 4]
    assert every_other(6) == [0, 2, 4] and every_other(3) == [0, 2]
    for bad in ("6", "-1", "a,b", ""):
        with pytest.raises(SystemExit):
            parse_keep(bad, 6)
