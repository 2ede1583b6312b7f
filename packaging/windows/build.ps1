# Build the offline installer for Windows x64 line PCs (run on Windows, from the repo root
# or anywhere: the script finds it). Needs Python 3.11 (py -3.11) and git.
#
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1 [-Out dist] [-FindLinks DIR]
#
# Makes dist\inspect-line-VERSION-win-amd64\ with app\ (the committed source, build id in
# engine\_build.txt), wheelhouse\ (a wheel of every runtime dependency and of the [export]
# and [postgres] extras), requirements*.txt, constraints.txt, install.ps1, uninstall.ps1.
# torch: PyPI's Windows wheel of torch==2.14.1 is the CPU build; for CUDA put the CUDA wheels
# from download.pytorch.org in a folder and pass it as -FindLinks.
param([string]$Out = "", [string]$FindLinks = "", [string]$Python = "py -3.11")
$ErrorActionPreference = "Stop"
$Root = (Resolve-Path (Join-Path $PSScriptRoot "..\..")).Path
Set-Location $Root
if (-not $Out) { $Out = Join-Path $Root "dist" }
$py = $Python.Split(" ")
function Py { & $py[0] $py[1..($py.Length - 1)] @args; if ($LASTEXITCODE) { throw "python $args failed ($LASTEXITCODE)" } }

$Version = (Py -c "import sys; sys.path.insert(0, '.'); from engine.version import _from_pyproject; print(_from_pyproject())").Trim()
$Build = (git describe --always --tags).Trim()
git diff --quiet HEAD; if ($LASTEXITCODE) { Write-Warning "uncommitted changes: the artifact holds the last commit ($Build) only" }
$Name = "inspect-line-$Version-win-amd64"
$Dest = Join-Path $Out $Name
if (Test-Path $Dest) { Remove-Item -Recurse -Force $Dest }
New-Item -ItemType Directory -Force "$Dest\app", "$Dest\wheelhouse" | Out-Null

git archive --format=zip -o "$Dest\app.zip" HEAD
Expand-Archive "$Dest\app.zip" -DestinationPath "$Dest\app"; Remove-Item "$Dest\app.zip"
Set-Content -Encoding ascii "$Dest\app\engine\_build.txt" $Build

Py -c @"
import sys, tomllib, pathlib
dest = pathlib.Path(r'$Dest')
project = tomllib.loads((dest / 'app' / 'pyproject.toml').read_text())['project']
(dest / 'requirements.txt').write_text('\n'.join(project['dependencies']) + '\n')
for extra in ('export', 'postgres'):
    (dest / f'requirements-{extra}.txt').write_text('\n'.join(project['optional-dependencies'][extra]) + '\n')
"@
$fl = @(); if ($FindLinks) { $fl = @("--find-links", $FindLinks) }
Py -m pip wheel -q @fl --wheel-dir "$Dest\wheelhouse" -r "$Dest\requirements.txt" -r "$Dest\requirements-export.txt" -r "$Dest\requirements-postgres.txt"
Py -m pip download -q @fl --only-binary=:all: --dest "$Dest\wheelhouse" pip setuptools wheel
Py -c @"
import pathlib, re
dest = pathlib.Path(r'$Dest')
pins = {re.sub(r'[-_.]+', '-', w.name.split('-')[0]).lower(): w.name.split('-')[1] for w in (dest / 'wheelhouse').glob('*.whl')}
(dest / 'constraints.txt').write_text(''.join(f'{n}=={v}\n' for n, v in sorted(pins.items())))
"@
Copy-Item "$PSScriptRoot\install.ps1", "$PSScriptRoot\uninstall.ps1" $Dest
$size = (Get-ChildItem -Recurse $Dest | Measure-Object -Sum Length).Sum / 1MB
Write-Host ("build: {0} ({1:N0} MB)" -f $Dest, $size)
