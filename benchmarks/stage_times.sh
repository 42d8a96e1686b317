#!/bin/bash
# Wall time of each stage on all shared sets (aligned), effnet-lite0 --layers all, quiet machine.
set -e
cd "$(dirname "$0")/.."; . .venv/bin/activate
D=${SHARED_DATA:-../shared/data}; O=${OUT:-runs/timing}; rm -rf $O; mkdir -p $O
SETS="cifake=$D/cifake_sd14 biggan=$D/forensynths_biggan stylegan=$D/forensynths_stylegan cyclegan=$D/forensynths_cyclegan gaugan=$D/forensynths_gaugan grip=$D/grip_gan_examples ldm=$D/imagenet_vs_ldm"
t() { local s=$(date +%s.%N); "$@" > $O/last.log 2>&1 || { cat $O/last.log; exit 1; }; echo "$(echo "$(date +%s.%N) - $s" | bc) s: ${*:1:3}"; }
t deepfake extract $SETS --backbone effnet-lite0 --layers all --align 256:90 --out $O/f.h5 -q
tail -3 $O/last.log
t deepfake reduce $O/f.h5 --method pca --dim 64 --datasets cifake --out $O/pca.reducer
t deepfake reduce $O/f.h5 --method autoencoder --dim 64 --datasets cifake --out $O/ae.reducer
t deepfake train $O/f.h5 --classifier all --datasets cifake --out $O/models_cifake
t deepfake train $O/f.h5 --classifier lda,svm --reducer $O/pca.reducer --datasets cifake --out $O/models_cifake_pca
t deepfake eval $O/models_cifake $O/models_cifake_pca --features $O/f.h5 --out $O/eval
t deepfake predict $O/models_cifake/lda.model $D/imagenet_vs_ldm --out $O/pred.csv
tail -1 $O/last.log
