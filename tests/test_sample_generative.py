"""The sample generative plugin (sample_generative_plugin/, installed as tiny-gpt), without a server: the
network's KV cache and batched decoding, the tokenizer, incremental detokenizing, sampling, and the hooks."""

import numpy as np
import pytest
from modelhost import END, Generation, InferenceRequest, InvalidInput, Piece
from modelhost_generative import Detokenizer, TinyGPT, generate_text, load_network, loop, weights
from modelhost_generative.generation import Decoding, pieces, step_all
from modelhost_generative.plugin import TinyGPTGenerator, chat_prompt
from modelhost_generative.train_tokenizer import CORPUS, TOKENIZER, train

PROMPT = "The model server answers"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The plugin loaded as the host loads it, its seeded weights built into a cache folder of the test's own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELHOST_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        patch.delenv("MODELHOST_TINY_GPT_WEIGHTS", raising=False)
        model = TinyGPT()
        model.load()
        yield model


@pytest.fixture(scope="module")
def network(plugin):
    return plugin.network


def sequence(length, seed=0):
    return np.random.default_rng(seed).integers(0, 2048, length).tolist()


def test_kv_cache_decoding_matches_recomputing_the_whole_sequence(network):
    ids = sequence(150)
    cache, logits = network.prefill(ids[:10])
    assert cache.keys.shape[2] < 150  # the cache grows on the way: the copy into more room is checked too
    for length in range(11, 151):
        logits = network.decode(cache, ids[length - 1])
        if length in (11, 64, 129, 150):
            _, recomputed = network.prefill(ids[:length])
            np.testing.assert_allclose(logits, recomputed, rtol=1e-4, atol=1e-4)
    assert cache.length == 150


def test_decode_batch_over_different_lengths_equals_each_sequence_alone(network):
    prompts = [sequence(n, seed=n) for n in (3, 17, 126)]  # 126 + 2 steps crosses the first cache's room
    batched = [network.prefill(ids)[0] for ids in prompts]
    alone = [network.prefill(ids)[0] for ids in prompts]
    for step in ([5, 6, 7], [8, 9, 10]):
        together = network.decode_batch(batched, step)
        assert together.shape == (3, network.config.vocab)
        for row, (cache, token) in enumerate(zip(alone, step)):
            np.testing.assert_allclose(together[row], network.decode(cache, token), rtol=1e-4, atol=1e-4)
    assert [cache.length for cache in batched] == [5, 19, 128]


def test_greedy_text_is_the_same_token_by_token_through_generate_text_and_the_hook(plugin, network):
    codec = plugin.codec
    ids = codec.encode(PROMPT)
    cache, logits = network.prefill(ids)
    made = []
    for _ in range(8):
        made.append(int(np.argmax(logits)))
        logits = network.decode(cache, made[-1])
    assert codec.end_id not in made  # else the answers below would end early
    by_hand = codec.decode(made)

    assert "".join(generate_text(network, codec, PROMPT, max_tokens=8, temperature=0)) == by_hand
    assert "".join(generate_text(network, codec.tokenizer, ids, max_tokens=8, temperature=0)) == by_hand
    request = InferenceRequest(protocol="openai",
                               generation=Generation(route="completions", prompt=PROMPT, max_tokens=8, temperature=0))
    for answer in (list(generator(plugin).generate(plugin.preprocess(request), request)),
                   stepped(plugin, [request])[0]):
        assert all(isinstance(piece, Piece) for piece in answer)
        assert "".join(piece.text for piece in answer) == by_hand
        assert sum(piece.tokens for piece in answer) == 8
        assert [piece.prompt_tokens for piece in answer] == [len(ids)] + [None] * (len(answer) - 1)


def generator(plugin: TinyGPT) -> TinyGPTGenerator:
    """The plugin that generates one sequence at a time, on the loaded plugin's network."""
    one = TinyGPTGenerator()
    one.network, one.codec = plugin.network, plugin.codec
    return one


def stepped(plugin: TinyGPT, requests: list[InferenceRequest]) -> list[list[Piece]]:
    """Each request's pieces, its sequence stepped with the others' as the host steps them."""
    states = [plugin.begin(plugin.preprocess(request), request) for request in requests]
    made: list[list[Piece]] = [[] for _ in requests]
    going = list(range(len(requests)))
    while going:
        for index, piece in zip(list(going), plugin.step([states[index] for index in going])):
            if piece is END:
                going.remove(index)
            elif piece is not None:
                made[index].append(piece)
    return made


def test_sequences_stepped_together_make_what_each_makes_alone(plugin, network):
    prompts = [("The model server", 40), ("", 12), ("A longer prompt, about the weather and the sea", 64), ("x", 1)]
    requests = [InferenceRequest(protocol="openai", generation=Generation(
        route="completions", prompt=prompt, max_tokens=max_tokens, temperature=0)) for prompt, max_tokens in prompts]
    together = stepped(plugin, requests)
    for (prompt, max_tokens), request, made in zip(prompts, requests, together):
        alone = list(generator(plugin).generate(plugin.preprocess(request), request))
        assert [(piece.text, piece.tokens, piece.prompt_tokens) for piece in made] == \
            [(piece.text, piece.tokens, piece.prompt_tokens) for piece in alone], prompt


def test_seeded_sampling_repeats(plugin, network):
    def sampled(seed):
        return "".join(generate_text(network, plugin.codec, PROMPT, 24, temperature=0.9, top_p=0.9, seed=seed))

    assert sampled(7) == sampled(7)
    assert sampled(7) != sampled(8)


def test_the_tokenizer_round_trips_the_corpus_and_retrains_to_the_shipped_file(plugin):
    codec = plugin.codec
    text = "".join(CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)[:12])
    ids = codec.encode(text)
    assert codec.decode(ids) == text
    assert b"".join(codec.token_bytes[token] for token in ids) == text.encode("utf-8")
    assert len(ids) < len(text.encode("utf-8")) / 2  # BPE merged, not bytes one by one
    assert train().to_str(pretty=True) == TOKENIZER.read_text(encoding="utf-8")


def test_embed_gives_unit_vectors_the_same_alone_as_in_a_padded_batch(plugin, network):
    texts = ["a", "hello world, hello tokens", "a", ""]
    embeddings = InferenceRequest(protocol="openai", verb="embed", instances=texts)
    vectors = plugin.embed(plugin.preprocess(embeddings))
    assert vectors.shape == (4, network.config.d_model) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)
    assert np.array_equal(vectors[0], vectors[2])
    np.testing.assert_allclose(plugin.embed(["a"])[0], vectors[0], atol=1e-5)  # the padding changed nothing
    assert not np.allclose(vectors[0], vectors[1])


def test_a_multibyte_character_is_never_split_across_pieces(plugin):
    codec = plugin.codec
    text = "Zürich, 日本語, 5 € 😀 ok"
    ids = codec.encode(text)
    detokenizer = Detokenizer(codec.token_bytes)
    fed = [detokenizer.feed(token) for token in ids]
    assert "".join(fed) + detokenizer.flush() == text
    assert "" in fed and "\ufffd" not in "".join(fed)  # something was held back, and nothing was mangled
    cut = Detokenizer(codec.token_bytes)
    assert cut.feed(codec.encode("😀")[0]) == "" and cut.flush() == "\ufffd"


class Scripted:
    """A network whose greedy choice is a set script of tokens, as prefill and decode see it."""

    def __init__(self, script, vocab):
        self.script, self.vocab, self.config = list(script), vocab, weights.Config(vocab=vocab)

    def logits(self):
        logits = np.zeros(self.vocab, np.float32)
        logits[self.script.pop(0)] = 1
        return logits

    def prefill(self, ids):
        return None, self.logits()

    def decode(self, cache, token):
        return self.logits()

    def decode_batch(self, caches, tokens):
        return np.stack([self.logits() for _ in caches])


def test_pieces_hold_back_a_character_until_its_last_token_and_count_its_tokens(plugin):
    codec = plugin.codec
    script = codec.encode("ab 日本 ü") + [codec.end_id]
    made = list(pieces(Scripted(script, codec.vocab_size), codec, [1], max_tokens=50, temperature=0))
    assert "".join(text for text, _ in made) == "ab 日本 ü"
    assert sum(count for _, count in made) == len(script) - 1
    assert all("\ufffd" not in text for text, _ in made)
    network = Scripted(script, codec.vocab_size)
    decoding = Decoding.begin(network, codec, [1], max_tokens=50)
    steps = []
    while not decoding.ended:
        steps += step_all(network, codec, [decoding])
    assert [step for step in steps if step != ("", 0)] == made and ("", 0) in steps  # held back: nothing that step


def test_preprocess_reads_each_protocol_and_names_a_bad_option(plugin):
    v2 = InferenceRequest(protocol="v2", inputs={"text_input": np.array([PROMPT.encode()], dtype=object)},
                          parameters={"max_tokens": 5, "temperature": 0, "seed": 3})
    prompt = plugin.preprocess(v2)
    assert (prompt.ids, prompt.max_tokens, prompt.temperature, prompt.seed) == (
        plugin.codec.encode(PROMPT), 5, 0.0, 3)
    assert len(list(generator(plugin).generate(prompt, v2))) >= 1
    for parameters, named in [({"temperature": -1}, "temperature"), ({"top_p": 1.5}, "top_p"),
                              ({"max_tokens": True}, "max_tokens"), ({"seed": "x"}, "seed")]:
        with pytest.raises(InvalidInput, match=named):
            plugin.preprocess(InferenceRequest(protocol="v2", inputs=v2.inputs, parameters=parameters))
    with pytest.raises(InvalidInput, match="text_input"):
        plugin.preprocess(InferenceRequest(protocol="v2", inputs={}))
    too_long = InferenceRequest(protocol="openai", generation=Generation(route="completions", prompt="a " * 600))
    with pytest.raises(InvalidInput, match="context"):
        plugin.preprocess(too_long)
    near_the_end = Generation(route="completions", prompt="a " * 500, max_tokens=100)
    room = 512 - len(plugin.codec.encode(near_the_end.prompt))
    assert plugin.preprocess(InferenceRequest(protocol="openai", generation=near_the_end)).max_tokens == room < 100
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert chat_prompt(chat) == "System: Be brief.\nUser: Hi\nAssistant:"


def test_other_weights_are_read_from_their_file(tmp_path, monkeypatch, plugin):
    small = weights.Config(vocab=plugin.codec.vocab_size, d_model=64, n_layers=2, n_heads=2, context=128)
    weights.write_atomically(weights.build(small, seed=5), tmp_path / "small.npz")
    monkeypatch.setenv("MODELHOST_TINY_GPT_WEIGHTS", str(tmp_path / "small.npz"))
    network = load_network(plugin.codec.vocab_size)
    assert network.config == small
    assert len(list(generate_text(network, plugin.codec, PROMPT, 4, temperature=0))) >= 1


def test_the_loop_times_generation(plugin, capsys):  # plugin: its cache folder, not ~/.cache
    assert loop.main(["--max-tokens", "6", "--runs", "1", "--quiet"]) == 0
    assert "tokens/s: median" in capsys.readouterr().out
