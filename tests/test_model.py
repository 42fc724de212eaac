"""AVENet: SSL-TIE's shapes (stride 16, layer4 stride 1), outputs, parameter names and initialisation."""
import torch
import torchvision

from trainer.config import ModelConfig
from trainer.model import AVENet


def test_shapes_and_outputs_small_width():
    torch.manual_seed(0)
    model = AVENet(ModelConfig(width=8)).eval()
    image = torch.randn(3, 3, 224, 224)
    logmel = torch.randn(3, 1, 257, 100)
    with torch.no_grad():
        out = model(image, logmel)
    assert out["map"].shape == (3, 1, 14, 14)  # 224 / 16
    assert out["v"].shape == (3, 64, 14, 14) and out["a"].shape == (3, 64)
    assert torch.allclose(out["v"].norm(dim=1), torch.ones(3, 14, 14), atol=1e-5)
    assert torch.allclose(out["a"].norm(dim=1), torch.ones(3), atol=1e-5)
    assert out["map"].abs().max() <= 1.0 + 1e-5
    # logits_matrix[i, j] = max over pixels of <v_i, a_j>; its diagonal is the max of each pair's map
    assert out["logits_matrix"].shape == (3, 3)
    assert torch.allclose(out["logits_matrix"].diagonal(), out["map"].flatten(1).amax(1), atol=1e-6)
    v1 = model.encode_image(image[1:2])
    assert torch.allclose(AVENet.paired_map(v1, out["a"][2:3]), AVENet.similarity(out["v"], out["a"])[1:2, 2:3],
                          atol=1e-5)
    # the audio map of a 257 x T log-mel is (17, ceil(T/16)) before global max pooling
    assert model.audnet(logmel[:1]).shape == (1, 64, 17, 7)


def test_real_model_parameters_match_ssl_tie():
    model = AVENet(ModelConfig(width=64))
    sd = model.state_dict()
    for key in ["imgnet.conv1.weight", "imgnet.conv1_a.weight", "imgnet.conv1_flow.weight", "imgnet.fc.weight",
                "audnet.conv1_a.weight", "audnet.layer4.1.bn2.running_var", "imgnet.layer2.0.downsample.0.weight",
                "vision_fc1.weight", "vision_fc1.bias", "conv3.weight", "norm3.running_mean"]:
        assert key in sd, key
    assert sd["vision_fc1.weight"].shape == (512, 1024, 1, 1)
    assert sd["imgnet.layer4.0.conv1.weight"].shape == (512, 256, 3, 3)
    assert "imgnet.layer4.0.downsample.0.weight" in sd  # channel change 256 -> 512 at stride 1
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "imgnet.conv1.weight" in trainable and "audnet.conv1_a.weight" in trainable
    assert {"imgnet.conv1_a.weight", "audnet.conv1.weight", "imgnet.fc.weight", "vision_fc1.weight",
            "norm3.weight"} <= frozen
    # two torchvision ResNet-18s without fc; the audio stem has 1 input channel instead of 3
    ref = torchvision.models.resnet18()
    trunk = sum(p.numel() for n, p in ref.named_parameters() if not n.startswith("fc."))
    assert sum(model.state_dict()[n].numel() for n in trainable) == 2 * trunk - 2 * 64 * 7 * 7
    bn = model.imgnet.layer3[0].bn1.weight
    assert abs(bn.mean().item() - 1.0) < 0.01 and 0.01 < bn.std().item() < 0.03
    assert model.norm3.bias.item() == 0.0


def test_unused_parameters_get_no_gradient():
    model = AVENet(ModelConfig(width=4))
    out = model(torch.randn(2, 3, 64, 64), torch.randn(2, 1, 64, 48))
    (out["map"].sum() + out["logits_matrix"].sum()).backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
