import math

import pytest

from codelsr.encoders import get_encoder
from codelsr.encoders.identifiers import code_terms, identifier_terms
from codelsr.encoders.lexical import LexicalEncoder, bm25_idf
from codelsr.errors import UnknownEncoderError


def test_identifiers_are_kept_whole_and_split_on_case_underscores_and_digits():
    assert identifier_terms("parseHTTPResponse") == ("parsehttpresponse", "parse", "http", "response")
    assert identifier_terms("max_retries") == ("max_retries", "max", "retries")
    assert identifier_terms("utf8Decode") == ("utf8decode", "utf", "8", "decode")


def test_code_terms_drop_stopwords_and_single_characters_but_keep_repeats():
    assert code_terms("the x of getValue(getValue)") == ["getvalue", "get", "value", "getvalue", "get", "value"]


def test_document_weights_are_bm25_saturated_term_frequency_with_length_normalisation():
    enc = LexicalEncoder(k1=1.2, b=0.75, reference_length=10)
    text = "alpha alpha beta"  # 3 terms
    vec = enc.encode_documents([text])[0]
    norm = 1.2 * (1 - 0.75 + 0.75 * 3 / 10)
    assert vec["alpha"] == pytest.approx(2 * 2.2 / (2 + norm))
    assert vec["beta"] == pytest.approx(1 * 2.2 / (1 + norm))


def test_bound_query_vectors_carry_idf_and_drop_terms_the_collection_lacks():
    enc = LexicalEncoder().bind_collection(10, {"alpha": 1, "beta": 9})
    q = enc.encode_queries(["alpha beta gamma alpha"])[0]
    assert set(q) == {"alpha", "beta"}
    assert q["alpha"] == pytest.approx(2 * math.log(1 + (10 - 1 + 0.5) / 1.5))
    assert q["beta"] == pytest.approx(bm25_idf(10, 9))
    assert q["alpha"] > q["beta"]


def test_document_vectors_do_not_depend_on_the_collection():
    a = LexicalEncoder().encode_documents(["def load_config(path): return path"])[0]
    b = LexicalEncoder().bind_collection(5, {"load": 2}).encode_documents(["def load_config(path): return path"])[0]
    assert a == b


def test_unknown_encoder_names_list_what_exists():
    with pytest.raises(UnknownEncoderError, match="lexical"):
        get_encoder("bm99")


def test_encoder_id_records_every_setting():
    assert LexicalEncoder(k1=1.5).encoder_id != LexicalEncoder().encoder_id
