"""layers.llm / layers.tts and pipeline_mode: what a PAL document may say of its model and voice."""

import pytest

from app.domain.errors import ValidationFailed
from app.domain.pal_document import shown_layers, split_secrets, validate_document


def doc(**layers):
    return {"pal_name": "Anna", "layers": layers}


def test_pipeline_mode_is_full_or_echo() -> None:
    assert validate_document({"pal_name": "A"}).pipeline_mode == "full"
    assert validate_document({"pal_name": "A", "pipeline_mode": "echo"}).pipeline_mode == "echo"
    for bad in ("audio", "text", "FULL", ""):
        with pytest.raises(ValidationFailed) as err:
            validate_document({"pal_name": "A", "pipeline_mode": bad})
        assert err.value.field == "pipeline_mode" and "full, echo" in str(err.value)


def test_llm_layer_accepts_model_url_and_key() -> None:
    valid = validate_document(doc(llm={"model": "m", "base_url": "http://10.0.0.5:8000/v1", "api_key": "sk-1",
                                       "api_key_set": True}))
    assert valid.layers["llm"] == {"model": "m", "base_url": "http://10.0.0.5:8000/v1", "api_key": "sk-1"}


@pytest.mark.parametrize("layer,field", [
    ({"model": ""}, "layers.llm.model"),
    ({"model": "x" * 201}, "layers.llm.model"),
    ({"base_url": "ftp://x"}, "layers.llm.base_url"),
    ({"base_url": "https://user:pw@host/v1"}, "layers.llm.base_url"),
    ({"base_url": "https://host:99999/v1"}, "layers.llm.base_url"),
    ({"base_url": "https://ho st/v1"}, "layers.llm.base_url"),
    ({"api_key": "has space"}, "layers.llm.api_key"),
    ({"api_key": 5}, "layers.llm.api_key"),
    ({"temperature": 1}, "layers.llm.temperature"),
])
def test_llm_layer_rejects(layer, field) -> None:
    with pytest.raises(ValidationFailed) as err:
        validate_document(doc(llm=layer))
    assert err.value.field == field


def test_tts_layer_provider() -> None:
    assert validate_document(doc(tts={})).layers["tts"] == {"provider": "espeak-ng"}
    assert validate_document(doc(tts={"provider": "openai", "voice": "alloy"})).layers["tts"]["voice"] == "alloy"
    with pytest.raises(ValidationFailed) as err:
        validate_document(doc(tts={"provider": "polly"}))
    assert err.value.field == "layers.tts.provider" and "espeak-ng, openai" in str(err.value)
    with pytest.raises(ValidationFailed):
        validate_document(doc(tts="loud"))


def test_keys_leave_the_layers_and_stay_on_read_modify_write() -> None:
    layers = validate_document(doc(llm={"model": "m", "api_key": "sk-1"}, tts={"provider": "openai"})).layers
    public, secrets = split_secrets(layers, {})
    assert secrets == {"llm": "sk-1"} and "api_key" not in public["llm"]
    shown = shown_layers(public, set(secrets))
    assert shown["llm"] == {"model": "m", "api_key_set": True} and shown["tts"]["api_key_set"] is False
    # The shown layers, sent back (api_key_set included), keep the stored key.
    again = validate_document(doc(**shown)).layers
    assert split_secrets(again, secrets)[1] == {"llm": "sk-1"}
    # A new key replaces it; a removed layer drops it.
    assert split_secrets(validate_document(doc(llm={"api_key": "sk-2"})).layers, secrets)[1] == {"llm": "sk-2"}
    assert split_secrets(validate_document(doc()).layers, secrets)[1] == {}
