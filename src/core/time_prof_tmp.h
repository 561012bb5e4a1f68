#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double prof_t0, prof_acc[512]; static const char *prof_name[512]; static int prof_n, prof_runs, prof_on = -1;
static double prof_now(void){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+t.tv_nsec*1e-9;}
static void prof_dump(void){ double tot=0; for(int i=0;i<prof_n;i++) tot+=prof_acc[i];
  for(int i=0;i<prof_n;i++) fprintf(stderr,"op %3d %-8s %8.3f ms\n",i,prof_name[i]?prof_name[i]:"?",prof_acc[i]/prof_runs*1e3);
  fprintf(stderr,"total %.3f ms over %d runs\n", tot/prof_runs*1e3, prof_runs);}
#define PROF_BEGIN(i) do{ if(prof_on<0){prof_on=getenv("MG_PROF")!=NULL; if(prof_on) atexit(prof_dump);} if(prof_on) prof_t0=prof_now(); }while(0)
#define PROF_END(i,name,n) do{ if(prof_on){ prof_acc[i]+=prof_now()-prof_t0; prof_name[i]=name; prof_n=n; if(i==n-1) prof_runs++; } }while(0)
