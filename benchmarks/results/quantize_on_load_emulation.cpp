// Session 33 (variant 58, benchmarks/NOTES.md): host emulation of the on-load activation quantizer
// (inter_quant_on_load_v58.patch, act_quantize_on_load.cuh) against quantize_activation_value: every
// bf16 value up to the row max at 3000 row maxima (254: scale 2, ties everywhere; 127; 1e-12; random).
// g++ -O2 -mfma quantize_on_load_emulation.cpp && ./a.out; for fp16 replace bf() by a _Float16 load.
// Output then: bf16 'total 97302054 flagged 9380 (9.64e-05) bad 0'; fp16 'total 94492734 flagged 16354 (1.73e-04) bad 0'.
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <random>
static float bf(uint16_t b){uint32_t u=(uint32_t)b<<16;float f;memcpy(&f,&u,4);return f;}
static uint32_t bits(float f){uint32_t u;memcpy(&u,&f,4);return u;}
int8_t exact(float x,float s){float q=roundf(x/s);q=fminf(fmaxf(q,-127.f),127.f);return (int8_t)q;}
int main(){
  std::mt19937 rng(1); long flagged=0,total=0,bad=0;
  const float magic=12582912.0f, thr=0.5f-1e-4f;
  for(int trial=0;trial<3000;++trial){
    float amax;
    if(trial==0) amax=254.f; else if(trial==1) amax=127.f; else if(trial==2) amax=1e-12f;
    else { uint16_t b; do { b=rng()&0x7fff; amax=bf(b);} while(!(amax>0) || std::isinf(amax)); }
    float s=fmaxf(amax,1e-10f)/127.f, inv=1.0f/s;
    for(uint32_t b=0;b<65536;++b){ float x=bf(b); if(std::isnan(x)) continue; if(!(fabsf(x)<=amax)) continue;
      float t=fmaf(x,inv,magic); float r=t-magic; float e=fmaf(x,inv,-r); total++;
      if(!(fabsf(e)<=thr)){flagged++;continue;}
      int8_t q=(int8_t)(bits(t)&0xff);
      if(q!=exact(x,s)){ if(bad<10) printf("bad x=%g s=%g q=%d exact=%d\n",x,s,q,exact(x,s)); bad++;}
    }
  }
  printf("total %ld flagged %ld (%.2e) bad %ld\n",total,flagged,(double)flagged/total,bad);
}
