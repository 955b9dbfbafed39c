import json

import pytest

from czmodel.compress.config import CompressionConfig, LayerSpec, deep_compression_default
from czmodel.errors import EncodeError

CFG = {
    "default": {"prune": {"sparsity": 0.9}, "quantize": {"method": "kmeans", "bits": 5},
                "entropy": "huffman"},
    "op_types": {"Conv": {"prune": {"sparsity": 0.65},
                          "quantize": {"method": "kmeans", "bits": 8}}},
    "layers": {"*.bias": None,
               "classifier.*": {"quantize": {"method": "affine", "bits": 8}},
               "classifier.2.*": {"prune": None, "gap_bits": 4}},
}


def test_precedence_and_globs():
    c = CompressionConfig.from_dict(CFG)
    s = c.resolve("features.0.weight", "Conv")
    assert s.prune == {"sparsity": 0.65} and s.quantize == {"method": "kmeans", "bits": 8}
    assert s.entropy == "huffman" and s.gap_bits == "auto"
    s = c.resolve("fc.weight", "Gemm")
    assert s.prune == {"sparsity": 0.9} and s.quantize["bits"] == 5
    s = c.resolve("classifier.0.weight", "Gemm")
    assert s.quantize == {"method": "affine", "bits": 8}  # whole section replaced
    assert s.prune == {"sparsity": 0.9}
    s = c.resolve("classifier.2.weight", "Gemm")
    assert s.prune is None and s.gap_bits == 4 and s.quantize["method"] == "affine"
    assert c.resolve("features.0.bias", "Conv") is None
    assert c.resolve("classifier.0.bias") is None
    # None is final: a later matching dict does not re-enable the tensor
    c2 = CompressionConfig.from_dict({**CFG, "layers": {"*.bias": None,
                                                        "fc.bias": {"entropy": "zstd"}}})
    assert c2.resolve("fc.bias") is None
    assert c2.resolve("fc.weight").entropy == "huffman"
    c3 = CompressionConfig.from_dict({**CFG, "op_types": {"BatchNormalization": None}})
    assert c3.resolve("bn.weight", "BatchNormalization") is None


def test_round_trips(tmp_path):
    c = CompressionConfig.from_dict(CFG)
    assert CompressionConfig.from_dict(json.loads(c.to_json())).to_dict() == c.to_dict()
    for suffix, text in ((".json", c.to_json()), (".yaml", c.to_yaml()), (".yml", c.to_yaml())):
        p = tmp_path / f"cfg{suffix}"
        p.write_text(text)
        back = CompressionConfig.from_file(p)
        assert back.to_dict() == c.to_dict()
        assert list(back.layers) == list(c.layers)  # glob order survives
    with pytest.raises(EncodeError, match="suffix"):
        p = tmp_path / "cfg.toml"
        p.write_text("")
        CompressionConfig.from_file(p)


def test_deep_compression_default():
    c = deep_compression_default()
    conv = c.resolve("conv1.weight", "Conv")
    fc = c.resolve("fc6.weight", "Gemm")
    assert conv.prune["sparsity"] == 0.65 and conv.quantize == {"method": "kmeans", "bits": 8}
    assert fc.prune["sparsity"] == 0.9 and fc.quantize == {"method": "kmeans", "bits": 5}
    assert fc.entropy == conv.entropy == "huffman"
    assert c.resolve("fc6.bias", "Gemm") is None
    assert c.resolve("bn.weight", "BatchNormalization").quantize is None
    assert CompressionConfig.from_dict(json.loads(c.to_json())).to_dict() == c.to_dict()


@pytest.mark.parametrize("bad,match", [
    ({"defaults": {}}, "unknown key 'defaults'"),
    ({"default": {"quantise": {}}}, "unknown key 'quantise'"),
    ({"default": {"quantize": {"method": "kmean", "bits": 4}}}, "'kmeans'"),
    ({"default": {"quantize": {"method": "kmeans", "bits": 9}}}, "bits"),
    ({"default": {"quantize": {"method": "kmeans"}}}, "needs 'bits'"),
    ({"default": {"quantize": {"method": "binary", "bits": 1}}}, "does not apply"),
    ({"default": {"quantize": {"method": "kmeans", "bits": 4, "colour": 1}}}, "'colour'"),
    ({"default": {"quantize": {"method": "kmeans", "bits": 4, "group_size": 32}}}, "group_size"),
    ({"default": {"quantize": {"method": "minifloat"}}}, "exp_bits"),
    ({"default": {"prune": {"sparsity": 1.5}}}, "sparsity"),
    ({"default": {"prune": {"sparsity": 0.5, "quality": 1.0}}}, "exactly one"),
    ({"default": {"prune": {"sparsity": 0.5, "granularity": "rows"}}}, "granularity"),
    ({"default": {"prune": {"sparsity": 0.5, "granularity": "block"}}}, "block"),
    ({"default": {"prune": {"n": 2}}}, "'n' and 'm'"),
    ({"default": {"lowrank": {"method": "cp", "rank": 4}}}, "'svd'"),
    ({"default": {"lowrank": {"method": "svd"}}}, "exactly one"),
    ({"default": {"lowrank": {"method": "tucker2", "rank": 4}}}, "r_out"),
    ({"default": {"entropy": "gzip"}}, "'huffman'"),
    ({"default": {"gap_bits": 9}}, "gap_bits"),
    ({"layers": {"x": {"prune": {"sparsity": "a"}}}}, "layers"),
])
def test_strict_validation(bad, match):
    with pytest.raises(EncodeError, match=match):
        CompressionConfig.from_dict(bad)


def test_valid_variants_and_layerspec():
    c = CompressionConfig.from_dict({"default": {
        "prune": {"n": 2, "m": 4},
        "quantize": {"method": "affine", "bits": 4, "group_size": 128, "symmetric": False},
        "lowrank": {"method": "tucker2", "rank": "vbmf"}, "gap_bits": 3}})
    s = c.resolve("w")
    assert s.prune == {"n": 2, "m": 4, "granularity": "nm"}
    assert s.lowrank["rank"] == "vbmf" and s.gap_bits == 3
    s = CompressionConfig.from_dict({"default": {"quantize": {"method": None}}}).resolve("w")
    assert s.quantize is None and s.prune is None and s.entropy == "auto"
    with pytest.raises(EncodeError):
        LayerSpec(entropy="lz4")
    s = LayerSpec(prune={"sparsity": 0.5, "granularity": "block", "block": (4, 4)},
                  quantize={"method": "minifloat", "exp_bits": 4, "man_bits": 3})
    assert s.prune["block"] == [4, 4]
