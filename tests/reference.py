"""An independent float64 NumPy convolution, the reference for fusion checks."""
import numpy as np


def conv2d(x, kernel, strides=1, padding=0, groups=1, bias=None, pad_value=0.0):
    """x [N, H, W, C] and kernel [kh, kw, C/groups, O] -> [N, H', W', O], in float64.

    padding: int or ((top, bottom), (left, right)); pad_value: scalar or [C] per channel.
    """
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    n, h, w, c = x.shape
    (pt, pb), (pl, pr) = padding
    padded = np.empty((n, h + pt + pb, w + pl + pr, c))
    padded[...] = np.asarray(pad_value, np.float64)
    padded[:, pt:pt + h, pl:pl + w] = x
    kh, kw, cin_g, out = kernel.shape
    s = strides
    ho = (padded.shape[1] - kh) // s + 1
    wo = (padded.shape[2] - kw) // s + 1
    out_g = out // groups
    y = np.zeros((n, ho, wo, out))
    for i in range(kh):
        for j in range(kw):
            patch = padded[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s]  # [n, ho, wo, c]
            for g in range(groups):
                y[..., g * out_g:(g + 1) * out_g] += patch[..., g * cin_g:(g + 1) * cin_g] @ kernel[i, j, :, g * out_g:(g + 1) * out_g]
    if bias is not None:
        y += np.asarray(bias, np.float64)
    return y

