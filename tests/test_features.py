"""pipeline.load.features and .negatives: SSL-TIE's log-mel against torchaudio (golden values), tiling, windows,
SpecAugment statistics, the silence and noise inputs."""
import math
import warnings

import pytest
import torch
import torchaudio

from pipeline.load import features as F, negatives as N


@pytest.fixture(autouse=True)
def _fresh_tables():
    """Every test builds the window and mel tables itself (they are cached per device): otherwise only the first
    test of a run would check how they are built."""
    F._CACHE.clear()
    yield


def torchaudio_ssltie(wave: torch.Tensor) -> torch.Tensor:
    """SSL-TIE's own transform chain (datasets/dataloader.py): MelSpectrogram(normalized=True) + AmplitudeToDB()."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=512, hop_length=239, n_mels=257,
                                                   normalized=True)
    return torchaudio.transforms.AmplitudeToDB()(mel(wave))


def sine(freq=1000.0, amp=0.5, seconds=10.0):
    t = torch.arange(int(seconds * 16000)) / 16000
    return amp * torch.sin(2 * math.pi * freq * t)


def test_logmel_matches_torchaudio_golden():
    x = sine()
    ours, ref = F.logmel(x), torchaudio_ssltie(x)
    assert ours.shape == (257, 670)
    # golden values read from torchaudio 2.11 for this sine: peak mel bin 90 of frame 300 at 12.5457 dB
    assert int(ref[:, 300].argmax()) == 90 and abs(float(ref[90, 300]) - 12.54566) < 1e-4
    assert int(ours[:, 300].argmax()) == 90 and abs(float(ours[90, 300]) - 12.54566) < 1e-4
    assert abs(float(ours[100, 300]) - (-68.47810)) < 1e-3
    noise = torch.randn(2, 48000, generator=torch.Generator().manual_seed(0)) * 0.1
    assert (F.logmel(noise) - torchaudio_ssltie(noise)).abs().max() < 1e-3


def test_banded_mel_equals_the_dense_filterbank_product():
    power = torch.rand(3, 1, 257, 50, generator=torch.Generator().manual_seed(1)) * 10.0
    dense = torch.matmul(F.mel_filterbank().T / F.window_energy(), power)
    banded = F.power_to_mel(power)
    assert banded.shape == dense.shape
    assert torch.allclose(banded, dense, rtol=1e-6, atol=1e-9)
    covered = sum((hi - lo) * (f1 - f0) for lo, hi, f0, f1, _ in F._mel_blocks("cpu"))
    assert covered < 0.1 * 257 * 257 and int((F.mel_filterbank() != 0).sum()) == 508


def test_cpu_chunks_give_the_whole_batch_values():
    assert F.CPU_CHUNK < 9
    wave = torch.randn(9, 1, 24000, generator=torch.Generator().manual_seed(2))
    whole = F.power_to_mel(F.stft_power(wave))          # the one-pass path a GPU takes
    chunked = F.mel_power(wave)
    assert chunked.shape == (9, 1, 257, F.num_frames(24000))
    assert torch.allclose(chunked, whole, rtol=1e-6, atol=1e-9)
    assert torch.equal(chunked[4], F.mel_power(wave[4]))
    assert torch.equal(F.mel_power(wave, db=True), F.to_db(chunked))   # each chunk to dB while in cache


def test_mel_power_tiles_windows_as_tile_does():
    g = torch.Generator().manual_seed(3)
    windows = torch.randn(6, 8000, generator=g)
    lengths = torch.tensor([8000, 3000, 1, 7999, 8000, 2500])
    windows[1, 3000:] = 99.0                                     # padding past a window's length is never read
    ours = F.mel_power(windows, lengths, 20000)
    ref = torch.stack([F.mel_power(F.tile(w[:n], 20000)) for w, n in zip(windows, lengths.tolist())])
    assert ours.shape == (6, 257, F.num_frames(20000))
    assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError):
        F.mel_power(windows, torch.tensor([5, 0, 1, 1, 1, 1]), 20000)


def test_frames_and_empty_mel_rows():
    assert F.num_frames(160000) == 670 and F.num_frames(80000) == 335
    fb = F.mel_filterbank()
    empty = (fb.sum(0) == 0)
    assert int(empty.sum()) == 28
    db = F.logmel(torch.randn(160000))
    assert torch.all(db[empty] == -100.0)
    assert torch.all(F.logmel(torch.zeros(16000)) == -100.0)


def test_tiling_as_ssltie_and_windows():
    w = torch.arange(7.0)
    assert F.tile(w, 20).tolist() == [float(i % 7) for i in range(20)]
    assert F.tile(torch.arange(30.0), 20).tolist() == list(map(float, range(20)))
    clip = torch.arange(160000.0)
    centre = F.take_window(clip, 48000, "center")
    assert centre[0] == 56000 and centre.numel() == 48000          # 3.5 s .. 6.5 s
    g = torch.Generator().manual_seed(0)
    starts = [F.window_start(160000, 48000, "random", g) for _ in range(2000)]
    assert min(starts) >= 0 and max(starts) <= 112000 and abs(sum(starts) / 2000 - 56000) < 4000
    assert F.take_window(torch.arange(10.0), 48000, "center").numel() == 10
    x = F.clip_to_input(clip[:48000], 48000, 160000, "center")
    assert x.shape == (160000,) and torch.equal(x[48000:96000], clip[:48000])


def test_spec_augment_statistics():
    g = torch.Generator().manual_seed(1)
    m = F.spec_augment_params(20000, 670, g)
    applied = m[:, 1] > 0
    assert abs(float((m[:, 1] > 0).float().mean()) - 0.8 * 179 / 180) < 0.015
    tw, fw = m[applied, 1].float(), m[applied, 3].float()
    assert tw.max() == 179 and fw.max() == 34 and tw.min() >= 0
    assert abs(float(tw.mean()) - 89.5) < 2.0 and abs(float(fw.mean()) - 17.0) < 0.6
    assert int((m[:, 0] + m[:, 1]).max()) <= 670 and int((m[:, 2] + m[:, 3]).max()) <= 257
    power = torch.ones(4, 1, 257, 670)
    masks = torch.tensor([[10, 5, 20, 3], [0, 0, 0, 0], [660, 10, 254, 3], [0, 2, 0, 0]])
    out = F.apply_masks(power, masks)
    assert int((out[0, 0] == 0).all(0).sum()) == 5 and int((out[0, 0] == 0).all(1).sum()) == 3
    assert torch.all(out[1] == 1) and torch.all(out[2, 0, :, 660:] == 0) and torch.all(out[2, 0, 254:] == 0)
    assert torch.all(F.to_db(out)[0, 0, :, 10:15] == -100.0)        # masked before dB
    # masking the log-mel with the dB floor gives the same values as masking the power before dB
    assert torch.equal(F.apply_masks(F.to_db(power), masks, fill=F.DB_FLOOR), F.to_db(out))
    assert torch.all(power == 1)
    # a time mask wider than the input (a 1 s log-mel has 67 frames, the width is drawn up to 179) starts before
    # frame 0: torchaudio's comparison (arange >= start) & (arange < start + width) masks frames 0..start+width-1,
    # not a slice from the end
    for batched in (False, True):           # the CPU's per-sample slices and the GPU's batched comparison
        short = F.apply_masks(torch.ones(2, 1, 257, 67), torch.tensor([[-20, 80, 0, 0], [-5, 3, 250, 10]]),
                              batched=batched)
        assert torch.all(short[0, 0, :, :60] == 0) and torch.all(short[0, 0, :, 60:] == 1)
        assert torch.all(short[1, 0, :250] == 1) and torch.all(short[1, 0, 250:] == 0)
        assert torch.equal(F.apply_masks(power, masks, batched=batched), out)
    masks = F.spec_augment_params(4000, 67, torch.Generator().manual_seed(1))
    assert int(masks[:, 0].min()) < 0                      # such starts are drawn


def test_negatives_and_db_switch():
    s = N.silence_logmel(3, 160000)
    assert s.shape == (3, 1, 257, 670) and torch.all(s == 0)
    assert torch.all(N.silence_logmel(2, 80000, db=True) == -100.0)
    a = N.noise_logmel(2, 48000, F.position_generator(5, 1, 2))
    b = N.noise_logmel(2, 48000, F.position_generator(5, 1, 2))
    c = N.noise_logmel(2, 48000, F.position_generator(5, 1, 3), db=True)
    assert a.shape == (2, 1, 257, F.num_frames(48000)) and torch.equal(a, b)
    assert not torch.equal(a[0], a[1]) and a.min() >= 0
    # two draws of the same noise process have nearly the same mean level; dB is applied only when asked
    assert abs(float(F.to_db(a).mean()) - float(c.mean())) < 1.0 and c.max() < 40



def test_spec_augment_is_the_drawn_masks_applied():
    """One draw per sample from the generator, applied with the fill; the input is kept unless `inplace`."""
    power = torch.rand(3, 1, 257, 40, generator=torch.Generator().manual_seed(0)) + 1.0
    masks = F.spec_augment_params(3, 40, torch.Generator().manual_seed(5))
    want = F.apply_masks(power.clone(), masks, fill=-7.0)
    keep = power.clone()
    got = F.spec_augment(power, torch.Generator().manual_seed(5), fill=-7.0)
    assert torch.equal(got, want) and torch.equal(power, keep) and (got == -7.0).any()
    F.spec_augment(power, torch.Generator().manual_seed(5), inplace=True, fill=-7.0)
    assert torch.equal(power, want)
    assert F.seconds_to_samples(0.5) == 8000 and F.seconds_to_samples(1 / 3) == 5333


def test_window_start_reaches_both_ends_of_its_range():
    """Random starts are uniform over 0..room, both ends included, drawn from the given generator only; the centred
    start of an odd room rounds down; a clip shorter than the window starts at 0."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(123)
    starts = {F.window_start(17, 12, "random", g) for _ in range(300)}
    assert starts == set(range(6))
    torch.manual_seed(7)                        # the global generator plays no part
    again = torch.Generator().manual_seed(0)
    assert [F.window_start(17, 12, "random", again) for _ in range(5)] == _draws(0, 6, 5)
    assert F.window_start(19, 12, "center") == 3 and F.window_start(18, 12, "center") == 3
    assert {F.window_start(5, 12, "random", g) for _ in range(50)} == {0} and F.window_start(5, 12, "center") == 0
    with pytest.raises(ValueError, match="audio window mode 'left' is not 'center' or 'random'"):
        F.window_start(17, 12, "left")


def _draws(seed: int, high: int, n: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return [int(torch.randint(0, high, (1,), generator=g)) for _ in range(n)]


def test_windows_follow_the_generator():
    wave = torch.arange(20.0)
    a = F.clip_to_input(wave, 8, 24, "random", torch.Generator().manual_seed(3))
    torch.manual_seed(99)
    b = F.clip_to_input(wave, 8, 24, "random", torch.Generator().manual_seed(3))
    start = _draws(3, 13, 1)[0]
    assert torch.equal(a, b) and torch.equal(a, torch.cat([wave[start:start + 8]] * 3))
    assert torch.equal(F.take_window(wave, 8, "random", torch.Generator().manual_seed(3)), wave[start:start + 8])


def test_tile_rows_and_errors():
    assert F.tile(torch.tensor([1.0, 2.0, 3.0]), 7).tolist() == [1, 2, 3, 1, 2, 3, 1]
    two = torch.tensor([[1.0, 2.0], [5.0, 6.0]])
    assert F.tile(two, 5).tolist() == [[1, 2, 1, 2, 1], [5, 6, 5, 6, 5]]          # each row on its own
    assert F.tile(torch.tensor([4.0, 5.0]), 1).tolist() == [4.0]
    with pytest.raises(ValueError, match="^cannot tile an empty waveform$"):
        F.tile(torch.zeros(0), 4)


def test_spec_augment_params_by_hand():
    """torchaudio's draws from five uniforms per sample, in this order: apply, time width, time start, freq width,
    freq start (float64); samples not drawn to apply get widths 0."""
    batch, frames = 6, 50
    u = torch.rand(batch, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64).tolist()
    got = F.spec_augment_params(batch, frames, torch.Generator().manual_seed(4), p=0.5, time_mask=20,
                                freq_mask=30, n_mels=100).tolist()
    applied = 0
    for row, (a, u1, u2, u3, u4) in zip(got, u):
        tw, fw = u1 * 20, u3 * 30
        want = [math.floor(u2 * (frames - tw)), math.floor(tw), math.floor(u4 * (100 - fw)), math.floor(fw)]
        if not a < 0.5:
            want[1] = want[3] = 0
        applied += a < 0.5
        assert row == want
    assert 0 < applied < batch                              # both kinds of sample occur


def test_position_seeds_by_hand():
    m = 2**63 - 1
    assert F.mix_seed(7) == 7 and F.mix_seed(7, 1) == (7 * 1_000_003 + 2) % m
    assert F.mix_seed(7, 1, 2) == ((7 * 1_000_003 + 2) * 1_000_003 + 3) % m
    big = 2**62 + 5                                        # the modulus matters
    assert F.mix_seed(big, 2**40) == (big * 1_000_003 + 2**40 + 1) % m
    g = F.position_generator(5, 1, 2)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=torch.Generator().manual_seed(
        F.mix_seed(5, 1, 2))))
    assert not torch.equal(torch.rand(3, generator=F.position_generator(5, 1, 2)),
                           torch.rand(3, generator=F.position_generator(5, 1)))


@pytest.mark.parametrize("batched", [False, True])
def test_apply_masks_edges_by_hand(batched):
    """Masks of width 1, starting at 0, starting below 0 (a mask wider than the input), reaching past the end, and
    width 0, on both code paths; `[B, 1, F=5, T=6]`, fill -1."""
    power = torch.arange(2 * 5 * 6, dtype=torch.float32).view(2, 1, 5, 6) + 1
    masks = torch.tensor([[0, 1, 4, 1],        # time column 0, mel row 4 (the last)
                          [-2, 3, -1, 2]])     # time columns 0-0 (start -2, width 3), mel row 0 (start -1, width 2)
    want = power.clone()
    want[0, :, :, 0] = -1
    want[0, :, 4, :] = -1
    want[1, :, :, 0] = -1
    want[1, :, 0, :] = -1
    got = F.apply_masks(power, masks, fill=-1.0, batched=batched)
    assert torch.equal(got, want) and not torch.equal(power, want)
    past = F.apply_masks(power, torch.tensor([[4, 9, 3, 0], [5, 0, 0, 0]]), fill=-1.0, batched=batched)
    want = power.clone()
    want[0, :, :, 4:] = -1                     # to the end; freq width 0 and time width 0 mask nothing
    assert torch.equal(past, want)
    none = F.apply_masks(power, torch.tensor([[-3, 3, -2, 2], [0, 0, 0, 0]]), fill=-1.0, batched=batched)
    assert torch.equal(none, power)            # masks that end at 0 cover nothing
    inplace = power.clone()
    F.apply_masks(inplace, masks, fill=-1.0, inplace=True, batched=batched)
    assert torch.equal(inplace, got)


def test_mel_power_chunks_tiles_and_db_on_every_path():
    """More waveforms than a CPU chunk (CPU_CHUNK) give each one's own mel; windows of mixed and equal real lengths
    are tiled each to `length` first; dB is to_db of the power."""
    g = torch.Generator().manual_seed(0)
    n = F.CPU_CHUNK * 2 + 1
    waves = torch.randn(n, 2000, generator=g)
    whole = F.mel_power(waves)
    one_by_one = torch.cat([F.mel_power(w[None]) for w in waves])
    assert whole.shape == (n, 257, F.num_frames(2000)) and torch.allclose(whole, one_by_one, rtol=1e-5, atol=1e-8)
    assert torch.allclose(F.mel_power(waves, db=True), F.to_db(one_by_one.clone()), atol=1e-4)
    for sizes in ([700] * n, [700, 300] * F.CPU_CHUNK + [1]):
        lengths = torch.tensor(sizes)
        got = F.mel_power(waves, lengths, 2000)
        want = torch.cat([F.mel_power(F.tile(w[:k], 2000)[None]) for w, k in zip(waves, sizes)])
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-8), sizes
    one = F.mel_power(waves[0])                                   # a single 1-D waveform
    assert one.shape == (257, F.num_frames(2000)) and torch.allclose(one, whole[0], rtol=1e-5, atol=1e-8)
    message = "^tiling needs windows \\[B, W\\], a target length and every window length >= 1$"
    for bad in [(waves[0], torch.tensor([5]), 10), (waves, torch.tensor([5] * n), None),
                (waves, torch.tensor([5] * (n - 1) + [0]), 10)]:
        with pytest.raises(ValueError, match=message):
            F.mel_power(*bad)


def test_spec_augment_defaults_and_options():
    power = torch.rand(4, 257, 30, generator=torch.Generator().manual_seed(1)) + 1.0      # [B, F, T]: no channel dim
    out = F.spec_augment(power, torch.Generator().manual_seed(2), p=1.0, time_mask=10, freq_mask=20)
    masks = F.spec_augment_params(4, 30, torch.Generator().manual_seed(2), p=1.0, time_mask=10, freq_mask=20)
    assert masks[:, 1].max() > 0 and torch.equal(out, F.apply_masks(power, masks))       # options reach the draw
    assert float(out.min()) == 0.0                                                        # default fill 0
    for batched in (False, True):                                                         # 3-D input, both paths
        assert torch.equal(F.apply_masks(power, masks, batched=batched), out)
