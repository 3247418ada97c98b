import torch
import torch.nn.functional as F

from autocompress.compress import kd_loss


def test_kd_with_alpha_zero_is_cross_entropy() -> None:
    torch.manual_seed(0)
    s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    assert torch.equal(kd_loss(s, t, y, alpha=0.0, temperature=4.0), F.cross_entropy(s, y))


def test_kd_pulls_student_towards_teacher() -> None:
    torch.manual_seed(0)
    t, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    same = kd_loss(t.clone(), t, y, alpha=1.0, temperature=2.0)
    other = kd_loss(torch.randn(8, 10), t, y, alpha=1.0, temperature=2.0)
    assert same.item() < 1e-6 < other.item()
