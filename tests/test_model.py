"""Tests for model.py: the CNN-GRU IMU encoder (paper section 3.2)."""
import pytest
import torch

from model import IMUEncoder, IMUEncoderConfig, num_parameters


@pytest.mark.parametrize("rate_hz", [50, 200])
@pytest.mark.parametrize("window_sec", [2.5, 5.0, 10.0])
def test_output_shape_for_any_window_length(rate_hz, window_sec):
    torch.manual_seed(0)
    encoder = IMUEncoder(IMUEncoderConfig(embed_dim=24))
    T = int(round(window_sec * rate_hz))
    out = encoder(torch.randn(3, 6, T))
    assert out.shape == (3, 24)
    assert torch.isfinite(out).all()


def test_gru_steps_over_time_not_channels():
    """The GRU sees (B, T', channels) with batch_first: T' steps of 32 features, for any T."""
    encoder = IMUEncoder(IMUEncoderConfig(embed_dim=8))
    seen = []
    encoder.gru.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    for T in (250, 1000, 2000):
        encoder(torch.randn(2, 6, T))
    assert seen == [(2, 250 // 27, 32), (2, 1000 // 27, 32), (2, 2000 // 27, 32)]


def test_official_layout_works_only_by_coincidence_at_1000_samples():
    """Without padding (the official layout) 1000 samples leave 32 steps, the same as the 32 channels."""
    encoder = IMUEncoder(IMUEncoderConfig(same_padding=False, embed_dim=8))
    assert encoder.output_length(1000) == encoder.cfg.channels
    assert encoder(torch.randn(2, 6, 1000)).shape == (2, 8)
    assert encoder(torch.randn(2, 6, 500)).shape == (2, 8)  # ours still works at other lengths


def test_input_groupnorm_normalises_acc_and_gyro_separately():
    """Scaling the gyro channels must not change how the accelerometer channels are normalised."""
    encoder = IMUEncoder(IMUEncoderConfig())
    x = torch.randn(2, 6, 100)
    y = x.clone()
    y[:, 3:] *= 100.0
    assert torch.allclose(encoder.norm_in(x)[:, :3], encoder.norm_in(y)[:, :3], atol=1e-5)


def test_batch_elements_are_independent():
    torch.manual_seed(0)
    encoder = IMUEncoder(IMUEncoderConfig(embed_dim=8)).eval()
    x = torch.randn(4, 6, 250)
    with torch.no_grad():
        together = encoder(x)
        alone = torch.cat([encoder(x[i:i + 1]) for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_too_short_window_is_a_clear_error():
    encoder = IMUEncoder(IMUEncoderConfig())
    with pytest.raises(ValueError, match=f"T >= {encoder.min_samples()}"):
        encoder(torch.randn(2, 6, encoder.min_samples() - 1))
    with pytest.raises(ValueError, match="expects"):
        encoder(torch.randn(2, 3, 500))
    assert encoder(torch.randn(1, 6, encoder.min_samples())).shape == (1, 512)


def test_parameter_count_matches_the_official_layers():
    """Official: bias-free convs, no activation, GRU hidden = embedding size, no projection."""
    cfg = IMUEncoderConfig()  # ViT-B/32's 512-d space
    C, D = cfg.channels, cfg.embed_dim
    convs = 6 * C * 10 + 2 * C * C * 5  # no biases
    gru = 3 * (C * D + D * D + 2 * D)
    n = num_parameters(IMUEncoder(cfg))
    assert n == 2 * 6 + convs + 2 * C + gru
    assert 500_000 < n < 2_000_000  # the paper's encoder is small
    ours = IMUEncoder(IMUEncoderConfig(relu=True, conv_bias=True, projection=True))
    assert num_parameters(ours) - n == 3 * C + D * D + D  # conv biases and the Linear: our departures
    assert not any(isinstance(m, torch.nn.ReLU) for m in IMUEncoder(cfg).modules()) and not IMUEncoder(cfg).convs[0].relu


def test_the_embedding_is_the_final_gru_hidden_state():
    encoder = IMUEncoder(IMUEncoderConfig(embed_dim=16)).eval()
    seen = []
    encoder.gru.register_forward_hook(lambda module, args, out: seen.append(out[1][-1]))
    with torch.no_grad():
        out = encoder(torch.randn(2, 6, 300))
    assert torch.equal(out, seen[0])
    with pytest.raises(ValueError, match="projection"):
        IMUEncoderConfig(embed_dim=16, gru_hidden=32)


def test_relu_option_changes_the_output():
    torch.manual_seed(0)
    plain = IMUEncoder(IMUEncoderConfig(embed_dim=8)).eval()
    relu = IMUEncoder(IMUEncoderConfig(embed_dim=8, relu=True)).eval()
    relu.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 300)
    with torch.no_grad():
        assert not torch.allclose(plain(x), relu(x))
