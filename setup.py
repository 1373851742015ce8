import os
import os.path as osp
import shutil
import sys
import warnings

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def get_version():
    ns = {}
    with open(osp.join(HERE, 'mmdwnet', 'version.py')) as f:
        exec(f.read(), ns)
    return ns['__version__']


def read_requirements(name):
    """Requirement lines of requirements/``name`` (comments and blank lines dropped)."""
    with open(osp.join(HERE, 'requirements', name)) as f:
        return [line.split('#')[0].strip() for line in f if line.split('#')[0].strip()]


def add_mim_extension():
    """Ship configs/tools/model-index inside the package (OpenMMLab's ``.mim`` convention).

    Editable installs (``pip install -e .``) get symlinks, other installs get copies, so that
    ``mim train mmdwnet CONFIG`` finds ``mmdwnet/.mim/tools/train.py`` and the configs.
    """
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif 'sdist' in sys.argv or 'bdist_wheel' in sys.argv or 'install' in sys.argv:
        mode = 'copy'
    else:
        return
    filenames = ['tools', 'configs', 'model-index.yml']
    mim_path = osp.join(HERE, 'mmdwnet', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for filename in filenames:
        src = osp.join(HERE, filename)
        if not osp.exists(src):
            continue
        tar = osp.join(mim_path, filename)
        if osp.isfile(tar) or osp.islink(tar):
            os.remove(tar)
        elif osp.isdir(tar):
            shutil.rmtree(tar)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, osp.dirname(tar)), tar)
        else:
            if osp.isfile(src):
                shutil.copyfile(src, tar)
            else:
                shutil.copytree(src, tar)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmdwnet',
        version=get_version(),
        description='Local attention and (dynamic) depth-wise convolution backbones for '
        'OpenMMLab (ICLR 2022: On the Connection between Local Attention and Dynamic '
        'Depth-wise Convolution)',
        long_description=open(osp.join(HERE, 'README.md')).read() if osp.exists(
            osp.join(HERE, 'README.md')) else '',
        long_description_content_type='text/markdown',
        license='MIT',
        packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
        include_package_data=True,
        # converters/map22kto1k.txt: the ImageNet-22K -> 1K head map of checkpoint loading
        package_data={'mmdwnet': ['.mim/**/*', '.mim/*', 'ops/csrc/*.c',
                                  'converters/map22kto1k.txt']},
        python_requires='>=3.9',
        install_requires=['mmengine>=0.10.7,<0.11', 'mmpretrain>=1.2.0,<1.3'],
        extras_require={
            'det': ['mmdet>=3.3.0,<3.4'],
            'seg': ['mmsegmentation>=1.2.2,<1.3', 'ftfy', 'regex'],
            'deploy': read_requirements('deploy.txt'),  # ONNX export (docs/deployment.md)
        },
        zip_safe=False,
    )
